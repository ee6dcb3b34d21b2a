package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"logship/internal/testlogs"
	"logship/logstore/batch"
)

// Crash tests (STYLE.md #4): damage the files the way a crash or a bad disk
// does, reopen, and check that exactly the whole batches before the damage
// are kept.

// logBuf collects what a store logs.
type logBuf struct{ testlogs.Buffer }

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// template writes n batches into one segment of a fresh store, closes it,
// and returns the batches, the segment's bytes and the batch positions.
func template(t *testing.T, n int) (want []stored, seg []byte, pos []int64) {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir, testOpts(1<<20))
	p := partitionT(t, s, testTopic, 3)
	for i := range n { // small batches keep the every-offset loops short
		want = append(want, appendBatch(t, p, makeBatch(t, testTopic, i, 1+i%2, 8)))
	}
	closeT(t, s)
	path := segmentFiles(t, partDir(dir))[0]
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return want, seg, positions(t, path)
}

// reopenDamaged writes data as the only segment of a fresh store directory,
// opens it and checks that it keeps exactly want (the whole batches before
// the damage at byte cut), that the cut bytes are in the .broken file and
// logged, and that the next append works.
func reopenDamaged(t *testing.T, dir string, data []byte, want []stored, cut int64) {
	t.Helper()
	pd := partDir(dir)
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(pd, segmentName(0))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	opts := testOpts(1 << 20)
	opts.Logger = logs.logger()
	s := openFS(t, dir, opts, noSyncFS{})
	defer closeT(t, s)
	p := s.Lookup(testTopic, 3)
	checkLog(t, p, want)

	broken, err := os.ReadFile(path + brokenSuffix)
	if cut == int64(len(data)) {
		if !errors.Is(err, os.ErrNotExist) || strings.Contains(logs.String(), "torn") {
			t.Fatalf("nothing to cut, yet .broken: %v; logs: %s", err, logs.String())
		}
	} else {
		if err != nil || !bytes.Equal(broken, data[cut:]) {
			t.Fatalf(".broken holds %d bytes (%v), want the %d cut", len(broken), err, int64(len(data))-cut)
		}
		for _, w := range []string{"level=WARN", "file=" + path, fmt.Sprintf("offset=%d", cut), fmt.Sprintf("bytes=%d", int64(len(data))-cut)} {
			if !strings.Contains(logs.String(), w) {
				t.Fatalf("log does not say %q: %s", w, logs.String())
			}
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != cut {
		t.Fatalf("segment is %v bytes (%v), want %d", fi.Size(), err, cut)
	}
	more := appendBatch(t, p, makeBatch(t, testTopic, 99, 2, 30))
	if wantBase := want[len(want)-1].next(); len(want) > 0 && more.base != wantBase {
		t.Fatalf("next append at %d, want %d", more.base, wantBase)
	}
	checkLog(t, p, append(want[:len(want):len(want)], more))
}

// keptBefore returns the batches that end at or before byte cut.
func keptBefore(want []stored, pos []int64, cut int64) ([]stored, int64) {
	keep, end := 0, int64(fileHeaderSize)
	for i := range want {
		if pos[i]+int64(len(want[i].data)) <= cut {
			keep, end = i+1, pos[i]+int64(len(want[i].data))
		}
	}
	return want[:keep], end
}

func TestTruncateEveryOffset(t *testing.T) {
	want, seg, pos := template(t, 8)
	work := t.TempDir()
	for cut := pos[len(pos)-3]; cut <= int64(len(seg)); cut++ {
		keep, end := keptBefore(want, pos, cut)
		t.Run(fmt.Sprintf("cut=%d", cut), func(t *testing.T) {
			reopenDamaged(t, filepath.Join(work, fmt.Sprint(cut)), seg[:cut], keep, end)
		})
	}
}

func TestFlipEveryByte(t *testing.T) {
	want, seg, pos := template(t, 8)
	work := t.TempDir()
	for at := pos[len(pos)-3]; at < int64(len(seg)); at++ {
		k := len(pos) - 1
		for pos[k] > at {
			k--
		}
		data := bytes.Clone(seg)
		data[at] ^= 0x55
		t.Run(fmt.Sprintf("at=%d", at), func(t *testing.T) {
			reopenDamaged(t, filepath.Join(work, fmt.Sprint(at)), data, want[:k], pos[k])
		})
	}
}

// TestBrokenNames checks that a second cut does not overwrite the first
// one's .broken file.
func TestBrokenNames(t *testing.T) {
	want, seg, pos := template(t, 4)
	dir := t.TempDir()
	reopenDamaged(t, dir, seg[:len(seg)-1], want[:3], pos[3])
	path := filepath.Join(partDir(dir), segmentName(0))
	// A torn tail after a crash: the clean Close above left a checkpoint
	// saying that the segment ends further, durably.
	if err := os.Remove(filepath.Join(dir, checkpointName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(bytes.Clone(seg[:pos[3]]), 1, 2, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	closeT(t, openT(t, dir, testOpts(1<<20)))
	if b, err := os.ReadFile(path + brokenSuffix + ".1"); err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Fatalf("second .broken: %q, %v", b, err)
	}
	if b, err := os.ReadFile(path + brokenSuffix); err != nil || !bytes.Equal(b, seg[pos[3]:len(seg)-1]) {
		t.Fatalf("first .broken changed: %v", err)
	}
}

// multiSegment writes batches over several segments and returns them, the
// directory and the segment files.
func multiSegment(t *testing.T) (dir string, want []stored, segs []string) {
	t.Helper()
	dir = t.TempDir()
	s := openT(t, dir, testOpts(2048))
	want = appendMany(t, partitionT(t, s, testTopic, 3), 0, 40)
	closeT(t, s)
	segs = segmentFiles(t, partDir(dir))
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	return dir, want, segs
}

// copyDir copies a store directory, so each case damages its own copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func rebase(path, from, to string) string { return filepath.Join(to, strings.TrimPrefix(path, from)) }

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at] ^= 0x55
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantCorruption(t *testing.T, err error, path string, offset int64) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v; want a *CorruptionError", err)
	}
	if ce.Path != path || ce.Offset != offset {
		t.Fatalf("corruption at %s:%d (%v), want %s:%d", ce.Path, ce.Offset, err, path, offset)
	}
}

// TestCorruptMiddleSegment: damage in a segment that is not the last is
// never cut silently: Open fails, naming the file and the batch.
func TestCorruptMiddleSegment(t *testing.T) {
	src, _, segs := multiSegment(t)
	mid := segs[1]
	pos := positions(t, mid)

	t.Run("last batch, index intact", func(t *testing.T) {
		// Open walks every batch after the last index entry.
		dir := copyDir(t, src)
		path := rebase(mid, src, dir)
		last := pos[len(pos)-1]
		flipByte(t, path, last+batch.PrefixSize+3)
		_, err := open(dir, testOpts(2048), noSyncFS{})
		wantCorruption(t, err, path, last)
	})
	t.Run("every byte of a batch, no index", func(t *testing.T) {
		for at := pos[1]; at < pos[2]; at++ {
			dir := copyDir(t, src)
			path := rebase(mid, src, dir)
			if err := os.Remove(indexPathOf(path)); err != nil {
				t.Fatal(err)
			}
			flipByte(t, path, at)
			_, err := open(dir, testOpts(2048), noSyncFS{})
			wantCorruption(t, err, path, pos[1])
		}
	})
	t.Run("truncated, no index", func(t *testing.T) {
		dir := copyDir(t, src)
		path := rebase(mid, src, dir)
		os.Remove(indexPathOf(path))
		if err := os.Truncate(path, pos[len(pos)-1]); err != nil {
			t.Fatal(err)
		}
		_, err := open(dir, testOpts(2048), noSyncFS{})
		wantCorruption(t, err, path, pos[len(pos)-1])
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := copyDir(t, src)
		if err := os.Remove(rebase(mid, src, dir)); err != nil {
			t.Fatal(err)
		}
		path := rebase(segs[0], src, dir)
		fi, _ := os.Stat(path)
		_, err := open(dir, testOpts(2048), noSyncFS{})
		wantCorruption(t, err, path, fi.Size())
	})
	for i, seg := range []string{mid, segs[len(segs)-1]} {
		t.Run(fmt.Sprintf("header of segment with data %d", i), func(t *testing.T) {
			for at := int64(0); at < fileHeaderSize; at++ {
				dir := copyDir(t, src)
				path := rebase(seg, src, dir)
				flipByte(t, path, at)
				_, err := open(dir, testOpts(2048), noSyncFS{})
				wantCorruption(t, err, path, 0)
			}
		})
	}
}

// TestIndexRebuilt damages the index of a sealed segment in every way and
// checks that it is rebuilt (or, when still valid, trusted) and that every
// read still works.
func TestIndexRebuilt(t *testing.T) {
	src, want, segs := multiSegment(t)
	idx0 := indexPathOf(segs[0])
	orig, err := os.ReadFile(idx0)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := decodeIndex(orig, 0, 2048)
	if err != nil || len(entries) < 3 {
		t.Fatalf("index of %s: %d entries, %v", segs[0], len(entries), err)
	}
	other, _ := os.ReadFile(indexPathOf(segs[1]))
	shifted := slicesMap(entries, func(e indexEntry) indexEntry { return indexEntry{e.rel, e.pos + 1} })
	flip := func(at int) []byte { b := bytes.Clone(orig); b[at] ^= 0x55; return b }
	for _, tc := range []struct {
		name    string
		data    []byte // nil: remove the file
		rebuilt bool
	}{
		{"missing", nil, true},
		{"empty", []byte{}, true},
		{"torn entry", orig[:len(orig)-5], true},
		{"flipped header", flip(5), true},
		{"flipped entry", flip(fileHeaderSize + indexEntrySize + 2), true},
		{"flipped entry crc", flip(len(orig) - 1), true},
		{"other segment's", other, true},
		{"valid entries at wrong positions", encodeIndex(0, shifted), true},
		{"stale but valid", orig[:len(orig)-2*indexEntrySize], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := rebase(idx0, src, dir)
			if tc.data == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs logBuf
			opts := testOpts(2048)
			opts.Logger = logs.logger()
			s := openT(t, dir, opts)
			defer closeT(t, s)
			checkLog(t, s.Lookup(testTopic, 3), want)
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rebuilt && (!bytes.Equal(got, orig) || !strings.Contains(logs.String(), "rebuilding index")) {
				t.Fatalf("index not rebuilt (%d bytes, want %d); logs: %s", len(got), len(orig), logs.String())
			}
			if !tc.rebuilt && (!bytes.Equal(got, tc.data) || strings.Contains(logs.String(), "rebuilding")) {
				t.Fatalf("valid index rewritten; logs: %s", logs.String())
			}
		})
	}
	t.Run("last segment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := rebase(indexPathOf(segs[len(segs)-1]), src, dir)
		want, _ := os.ReadFile(path)
		if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		closeT(t, openT(t, dir, testOpts(2048)))
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Fatal("index of the last segment not rewritten at Close")
		}
	})
	t.Run("leftover tmp", func(t *testing.T) {
		dir := copyDir(t, src)
		tmp := rebase(idx0, src, dir) + tmpSuffix
		if err := os.WriteFile(tmp, []byte("half an index"), 0o644); err != nil {
			t.Fatal(err)
		}
		closeT(t, openT(t, dir, testOpts(2048)))
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover %s: %v", tmp, err)
		}
	})
}

func slicesMap[T any](s []T, fn func(T) T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = fn(v)
	}
	return out
}

// TestTornSegmentCreation: a roll that crashed before the new segment's
// header was durable leaves a short last segment; it is set aside, and the
// segment before it is the last again.
func TestTornSegmentCreation(t *testing.T) {
	src, want, segs := multiSegment(t)
	base := want[len(want)-1].next()
	hdr := encodeFileHeader(segmentMagic, segmentVersion, base)
	cases := map[string][]byte{"zeros": make([]byte, fileHeaderSize)}
	for n := 0; n < fileHeaderSize; n++ {
		cases[fmt.Sprintf("%d header bytes", n)] = hdr[:n]
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dir := copyDir(t, src)
			torn := filepath.Join(partDir(dir), segmentName(base))
			if err := os.WriteFile(torn, data, 0o644); err != nil {
				t.Fatal(err)
			}
			s := openFS(t, dir, testOpts(2048), noSyncFS{})
			defer closeT(t, s)
			p := s.Lookup(testTopic, 3)
			checkLog(t, p, want)
			if got, err := os.ReadFile(torn + brokenSuffix); err != nil || !bytes.Equal(got, data) {
				t.Fatalf(".broken: %v", err)
			}
			more := appendBatch(t, p, makeBatch(t, testTopic, 99, 1, 10))
			checkLog(t, p, append(want[:len(want):len(want)], more))
			if n := len(segmentFiles(t, partDir(dir))); n != len(segs) {
				t.Fatalf("%d segments, want %d", n, len(segs))
			}
		})
	}
	t.Run("only segment", func(t *testing.T) {
		for _, base := range []int64{0, 500} {
			dir := t.TempDir()
			if err := os.MkdirAll(partDir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			hdr := encodeFileHeader(segmentMagic, segmentVersion, base)
			if err := os.WriteFile(filepath.Join(partDir(dir), segmentName(base)), hdr[:7], 0o644); err != nil {
				t.Fatal(err)
			}
			s := openT(t, dir, testOpts(2048))
			p := s.Lookup(testTopic, 3)
			if p.Start() != base || p.End() != base {
				t.Fatalf("Start, End = %d, %d; want %d", p.Start(), p.End(), base)
			}
			more := appendBatch(t, p, makeBatch(t, testTopic, 1, 3, 10))
			checkLog(t, p, []stored{more})
			closeT(t, s)
		}
	})
}
