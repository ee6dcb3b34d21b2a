package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"logship/logstore/batch"
)

func TestParseFsync(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FsyncPolicy
		ok   bool
	}{
		{"always", FsyncAlways, true},
		{"interval", FsyncInterval, true},
		{"never", FsyncNever, true},
		{"", 0, false},
		{"Always", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFsync(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseFsync(%q) = %v, %v", tc.in, got, err)
			}
			if tc.ok && got.String() != tc.in {
				t.Fatalf("String() = %q", got.String())
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"zero", Options{}, nil},
		{"small segment", Options{SegmentBytes: 100}, []string{"SegmentBytes 100"}},
		{"every problem", Options{SegmentBytes: 1 << 40, IndexIntervalBytes: -1, Fsync: 7, FsyncInterval: -1},
			[]string{"SegmentBytes", "IndexIntervalBytes -1", "Fsync policy 7", "FsyncInterval -1ns"}},
		{"segment lifecycle", Options{SegmentMaxAge: -1, MaxOpenSegments: -1, RetentionBytes: -1, RetentionCheckInterval: -1},
			[]string{"SegmentMaxAge -1ns", "MaxOpenSegments -1", "RetentionBytes -1", "RetentionCheckInterval -1ns"}},
		{"retention age negative: never", Options{RetentionAge: -1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("Validate() = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
			s, err := Open(t.TempDir(), tc.opts)
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("Open: %v", err)
			}
			if err == nil {
				closeT(t, s)
			}
		})
	}
}

// TestRoundTrip appends across many segment rolls, reads every offset back
// with several limits, and does it again after a reopen.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segBytes int64
		interval int
	}{
		{"one segment", 1 << 20, 256},
		{"rolls", 2048, 256},
		{"index every batch", 2048, 1},
		{"default interval", 4096, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOpts(tc.segBytes)
			opts.IndexIntervalBytes = tc.interval
			s := openT(t, dir, opts)
			p := partitionT(t, s, testTopic, 3)
			checkLog(t, p, nil)
			want := appendMany(t, p, 0, 120)
			checkLog(t, p, want)
			segs := len(segmentFiles(t, partDir(dir)))
			if tc.segBytes < 1<<20 && segs < 5 {
				t.Fatalf("only %d segments", segs)
			}
			closeT(t, s)

			s = openT(t, dir, opts)
			defer closeT(t, s)
			p = s.Lookup(testTopic, 3)
			if p == nil {
				t.Fatal("partition gone after reopen")
			}
			checkLog(t, p, want)
			want = append(want, appendMany(t, p, 120, 30)...)
			checkLog(t, p, want)
		})
	}
}

// TestReadLimits checks that Read stops at whole batches, within maxBytes,
// but always returns one batch.
func TestReadLimits(t *testing.T) {
	s := openT(t, t.TempDir(), testOpts(1<<20))
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 0)
	want := appendMany(t, p, 0, 10)
	size := func(from, to int) int {
		n := 0
		for _, w := range want[from:to] {
			n += len(w.data)
		}
		return n
	}
	for _, tc := range []struct {
		name     string
		maxBytes int
		batches  int
	}{
		{"zero", 0, 1},
		{"negative", -1, 1},
		{"less than one", len(want[0].data) - 1, 1},
		{"exactly one", len(want[0].data), 1},
		{"one and a bit", len(want[0].data) + 1, 1},
		{"exactly three", size(0, 3), 3},
		{"three and a bit", size(0, 4) - 1, 3},
		{"everything", 1 << 30, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Read(0, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != size(0, tc.batches) {
				t.Fatalf("read %d bytes, want %d batches (%d bytes)", len(got), tc.batches, size(0, tc.batches))
			}
			checkBatches(t, got, want)
		})
	}
}

// TestReadStopsAtSegment documents that one Read never spans two segments.
func TestReadStopsAtSegment(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOpts(2048))
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	want := appendMany(t, p, 0, 40)
	pos := positions(t, segmentFiles(t, partDir(dir))[0])
	got, err := p.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	checkBatches(t, got, want[:len(pos)])
	if n := len(pos); len(got) != sumLen(want[:n]) {
		t.Fatalf("read %d bytes, the first segment holds %d", len(got), sumLen(want[:n]))
	}
}

func sumLen(s []stored) int {
	n := 0
	for _, w := range s {
		n += len(w.data)
	}
	return n
}

func TestPartitions(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOpts(0))
	for _, k := range []struct {
		topic string
		id    int
	}{{"b", 1}, {"a-b", 10}, {"a-b", 2}, {"a", 0}, {"a-b-1", 0}} {
		partitionT(t, s, k.topic, k.id)
	}
	names := func(ps []*Partition) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p.dir))
		}
		return out
	}
	want := []string{"a-0", "a-b-2", "a-b-10", "a-b-1-0", "b-1"}
	if got := names(s.Partitions()); !slices.Equal(got, want) {
		t.Fatalf("Partitions() = %v, want %v", got, want)
	}
	if p := s.Lookup("a-b", 3); p != nil {
		t.Fatal("Lookup of an absent partition")
	}
	if p, _ := s.Partition("a-b", 2); p != s.Lookup("a-b", 2) {
		t.Fatal("Partition does not return the existing partition")
	}
	for _, bad := range []struct {
		topic string
		id    int
	}{{"", 0}, {"a b", 0}, {"..", 0}, {"a/b", 0}, {"a", -1}} {
		if _, err := s.Partition(bad.topic, bad.id); err == nil {
			t.Errorf("Partition(%q, %d) accepted", bad.topic, bad.id)
		}
	}
	closeT(t, s)

	// Unrelated entries are left alone.
	for _, name := range []string{"a-01", "a-+1", "notapartition", "a b-1", "-1"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "x-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, testOpts(0))
	defer closeT(t, s)
	if got := names(s.Partitions()); !slices.Equal(got, want) {
		t.Fatalf("after reopen Partitions() = %v, want %v", got, want)
	}
}

func TestCheckFunc(t *testing.T) {
	s := openT(t, t.TempDir(), testOpts(0))
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 0)
	want := appendMany(t, p, 0, 2)

	b := makeBatch(t, testTopic, 9, 2, 10)
	h, _ := batch.Parse(b)
	res, err := p.Append(b, &h, func(h *batch.Header) (bool, error) { return false, nil })
	if err != nil || res.Written || res.Next != want[1].next() {
		t.Fatalf("skipped append = %+v, %v", res, err)
	}
	errDup := errors.New("dedup says no")
	res, err = p.Append(b, &h, func(*batch.Header) (bool, error) { return true, errDup })
	if err != errDup || res.Written {
		t.Fatalf("failed check: %+v, %v", res, err)
	}
	checkLog(t, p, want)
	var seen uint64
	res, err = p.Append(b, &h, func(h *batch.Header) (bool, error) { seen = h.SourceID; return true, nil })
	if err != nil || !res.Written || seen != 9 || res.BaseOffset != want[1].next() {
		t.Fatalf("append = %+v, %v (check saw %d)", res, err, seen)
	}
}

func TestAppendRefusesMismatch(t *testing.T) {
	s := openT(t, t.TempDir(), testOpts(0))
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 0)
	b := makeBatch(t, "other", 1, 1, 10)
	h, _ := batch.Parse(b)
	if _, err := p.Append(b, &h, nil); err == nil {
		t.Fatal("appended a batch of another topic")
	}
	b = makeBatch(t, testTopic, 1, 1, 10)
	h, _ = batch.Parse(b)
	if _, err := p.Append(b[:len(b)-1], &h, nil); err == nil {
		t.Fatal("appended a batch shorter than its header says")
	}
	if p.End() != 0 {
		t.Fatalf("End() = %d", p.End())
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), testOpts(0))
	p := partitionT(t, s, testTopic, 0)
	want := appendMany(t, p, 0, 3)
	closeT(t, s)
	closeT(t, s) // idempotent
	b := makeBatch(t, testTopic, 5, 1, 10)
	h, _ := batch.Parse(b)
	if _, err := p.Append(b, &h, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := p.Read(0, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := p.Scan(func(*batch.Header) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
	if err := p.WaitDurable(want[2].next()); err != nil {
		t.Fatalf("WaitDurable of durable data after Close: %v", err)
	}
	if _, err := s.Partition("new", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Partition after Close: %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOpts(0))
	if _, err := Open(dir, testOpts(0)); err == nil {
		t.Fatal("opened a store twice")
	}
	closeT(t, s)
	closeT(t, openT(t, dir, testOpts(0)))
}

// TestBigBatchOwnSegment: a batch larger than SegmentBytes gets a segment
// of its own, and the next batch starts another.
func TestBigBatchOwnSegment(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(MinSegmentBytes)
	s := openT(t, dir, opts)
	p := partitionT(t, s, testTopic, 3)
	want := appendMany(t, p, 0, 2)
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 2, 3, 1500)))
	want = append(want, appendMany(t, p, 3, 2)...)
	checkLog(t, p, want)
	segs := segmentFiles(t, partDir(dir))
	if len(segs) != 3 || len(positions(t, segs[1])) != 1 {
		t.Fatalf("segments %v; want the big batch alone in the second", segs)
	}
	closeT(t, s)
	s = openT(t, dir, opts)
	defer closeT(t, s)
	checkLog(t, s.Lookup(testTopic, 3), want)
}

// hugeCount rewrites the record count of an unstamped batch. Parse does not
// tie the count to the payload, so such a batch is accepted, and it moves
// offsets by billions at once.
func hugeCount(t testing.TB, b []byte, count uint32) []byte {
	t.Helper()
	const offCount, offBodyCRC, offBody = 31, 25, 29 // see batch/doc.go
	binary.BigEndian.PutUint32(b[offCount:], count)
	binary.BigEndian.PutUint32(b[offBodyCRC:], batch.Checksum(b[offBody:]))
	if h, err := batch.Parse(b); err != nil || h.Count != int(count) {
		t.Fatalf("crafted batch: %v", err)
	}
	return b
}

// TestRelativeOffsetRoll: a segment rolls before a relative offset in its
// index would pass 32 bits.
func TestRelativeOffsetRoll(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(1 << 20)
	opts.IndexIntervalBytes = 1
	s := openT(t, dir, opts)
	p := partitionT(t, s, testTopic, 3)
	var want []stored
	for i := range 3 {
		want = append(want, appendBatch(t, p, hugeCount(t, makeBatch(t, testTopic, i, 1, 10), math.MaxUint32)))
	}
	if n := len(segmentFiles(t, partDir(dir))); n != 2 {
		t.Fatalf("%d segments, want 2", n)
	}
	check := func(p *Partition) {
		t.Helper()
		for _, w := range want {
			for _, off := range []int64{w.base, w.base + 1, w.next() - 1} {
				if got, err := p.Read(off, 1); err != nil || !bytes.Equal(got, w.data) {
					t.Fatalf("Read(%d): %v", off, err)
				}
			}
		}
		if p.End() != want[2].next() {
			t.Fatalf("End() = %d, want %d", p.End(), want[2].next())
		}
	}
	check(p)
	closeT(t, s)
	s = openT(t, dir, opts)
	defer closeT(t, s)
	check(s.Lookup(testTopic, 3))
}

// TestEmptyPartitionDir: a crash right after the directory was made.
func TestEmptyPartitionDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(partDir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir, testOpts(0))
	defer closeT(t, s)
	p := s.Lookup(testTopic, 3)
	if p == nil || p.End() != 0 {
		t.Fatal("empty partition directory not opened as an empty partition")
	}
	checkLog(t, p, appendMany(t, p, 0, 3))
}
