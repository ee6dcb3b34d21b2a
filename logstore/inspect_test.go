package logstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inspectStore writes a closed store of 3+ segments and returns its dir and
// what it holds.
func inspectStore(t *testing.T) (string, []stored) {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir, testOpts(2048))
	p := partitionT(t, s, testTopic, 3)
	want := appendMany(t, p, 0, 60)
	closeT(t, s)
	if n := len(segmentFiles(t, partDir(dir))); n < 3 {
		t.Fatalf("setup: %d segments", n)
	}
	return dir, want
}

func verifyProblems(t *testing.T, dir string) ([]Problem, VerifySummary) {
	t.Helper()
	var probs []Problem
	sum, err := Verify(dir, func(p Problem) { probs = append(probs, p) })
	if err != nil {
		t.Fatal(err)
	}
	return probs, sum
}

func TestVerifyClean(t *testing.T) {
	dir, want := inspectStore(t)
	probs, sum := verifyProblems(t, dir)
	if len(probs) != 0 {
		t.Fatalf("problems in a clean store: %v", probs)
	}
	if sum.Partitions != 1 || sum.Batches != int64(len(want)) || sum.Records != want[len(want)-1].next() || sum.Indexes != 2*sum.Segments {
		t.Fatalf("summary %+v", sum)
	}
}

// TestVerifyNamesFileAndByte: a flipped byte in a middle segment's batch is
// reported with that segment and the batch's position; Verify changes
// nothing on disk.
func TestVerifyNamesFileAndByte(t *testing.T) {
	dir, _ := inspectStore(t)
	segs := segmentFiles(t, partDir(dir))
	mid := segs[1]
	pos := positions(t, mid)
	data, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	data[pos[1]+40] ^= 0x10
	if err := os.WriteFile(mid, data, 0o644); err != nil {
		t.Fatal(err)
	}
	probs, _ := verifyProblems(t, dir)
	if len(probs) == 0 || probs[0].Path != mid || probs[0].Pos != pos[1] {
		t.Fatalf("problems %v, want %s at byte %d first", probs, mid, pos[1])
	}
	if after, _ := os.ReadFile(mid); string(after) != string(data) {
		t.Fatal("Verify changed the segment")
	}
}

func TestVerifyIndex(t *testing.T) {
	dir, _ := inspectStore(t)
	idx := indexPathOf(segmentFiles(t, partDir(dir))[0])
	data, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) <= fileHeaderSize {
		t.Fatal("setup: empty index")
	}
	// A valid entry pointing at the wrong place: its own CRC is fine.
	e, _ := decodeIndexEntry(data[fileHeaderSize:])
	e.pos++
	copy(data[fileHeaderSize:], appendIndexEntry(nil, e))
	os.WriteFile(idx, data, 0o644)
	probs, _ := verifyProblems(t, dir)
	if len(probs) != 1 || probs[0].Path != idx || !strings.Contains(probs[0].Err.Error(), "not the start of a batch") {
		t.Fatalf("problems %v", probs)
	}
	os.Remove(idx)
	probs, _ = verifyProblems(t, dir)
	if len(probs) != 1 || !strings.Contains(probs[0].String(), "missing") {
		t.Fatalf("problems %v", probs)
	}
}

func TestVerifyTimeIndex(t *testing.T) {
	src, _, _, segs := timedSegments(t)
	tidx := timeIndexPathOf(segs[0])
	orig, err := os.ReadFile(tidx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := decodeTimeIndex(orig, 0)
	if err != nil || len(entries) < 3 {
		t.Fatalf("setup: %d entries, %v", len(entries), err)
	}
	if probs, _ := verifyProblems(t, src); len(probs) != 0 {
		t.Fatalf("problems in a clean store: %v", probs)
	}
	for _, tc := range []struct {
		name    string
		entries []timeEntry
		want    string
	}{
		{"offset off", slicesMap(entries, func(e timeEntry) timeEntry {
			if e.rel == entries[1].rel && e.rel+1 < entries[2].rel {
				e.rel++
			}
			return e
		}), "where no batch starts"},
		{"time off", slicesMap(entries, func(e timeEntry) timeEntry {
			if e.rel == 0 {
				e.t--
			}
			return e
		}), "was appended at"},
		{"last dropped", entries[:len(entries)-1], "last batch's append time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := rebase(tidx, src, dir)
			if err := os.WriteFile(path, encodeTimeIndex(0, tc.entries), 0o644); err != nil {
				t.Fatal(err)
			}
			probs, _ := verifyProblems(t, dir)
			if len(probs) != 1 || probs[0].Path != path || !strings.Contains(probs[0].Err.Error(), tc.want) {
				t.Fatalf("problems %v, want one about %s saying %q", probs, path, tc.want)
			}
		})
	}
	t.Run("flipped", func(t *testing.T) {
		dir := copyDir(t, src)
		path := rebase(tidx, src, dir)
		flipByte(t, path, int64(len(orig)-3))
		if probs, _ := verifyProblems(t, dir); len(probs) != 1 || !errors.Is(probs[0].Err, errTimeIndex) {
			t.Fatalf("problems %v", probs)
		}
	})
}

func TestDump(t *testing.T) {
	dir, want := inspectStore(t)
	for _, from := range []int64{0, want[10].base, want[10].base + 1, want[len(want)-1].base} {
		var got []int64
		err := Dump(dir, testTopic, 3, from, func(b *DumpBatch) error {
			got = append(got, b.Header.BaseOffset)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		first := 0
		for first < len(want) && want[first].next() <= from {
			first++
		}
		if len(got) != len(want)-first || got[0] != want[first].base {
			t.Fatalf("from %d: got %d batches starting %d", from, len(got), got[0])
		}
	}
	// Damage stops the dump with the place named.
	seg := segmentFiles(t, partDir(dir))[0]
	data, _ := os.ReadFile(seg)
	data[len(data)-3] ^= 1
	os.WriteFile(seg, data, 0o644)
	var ce *CorruptionError
	if err := Dump(dir, testTopic, 3, 0, func(*DumpBatch) error { return nil }); !errors.As(err, &ce) || ce.Path != seg {
		t.Fatalf("got %v", err)
	}
	if err := Dump(dir, "nope", 0, 0, func(*DumpBatch) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing partition: %v", err)
	}
}

// TestVerifyStateFiles: a damaged snapshot or checkpoint is a problem
// named by its file.
func TestVerifyStateFiles(t *testing.T) {
	dir, _ := inspectStore(t)
	probs, sum := verifyProblems(t, dir)
	if len(probs) != 0 || sum.StateFiles < 2 {
		t.Fatalf("clean store: problems %v, %d state files", probs, sum.StateFiles)
	}
	snaps, _ := filepath.Glob(filepath.Join(partDir(dir), "*"+snapshotSuffix))
	cp := filepath.Join(dir, checkpointName)
	for _, path := range []string{snaps[len(snaps)-1], cp} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x04
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		probs, _ := verifyProblems(t, dir)
		if len(probs) != 1 || probs[0].Path != path {
			t.Fatalf("after damaging %s: problems %v", path, probs)
		}
		data[len(data)/2] ^= 0x04
		os.WriteFile(path, data, 0o644)
	}
}
