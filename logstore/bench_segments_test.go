package logstore

import (
	"fmt"
	"io"
	"testing"

	"logship/logstore/batch"
)

// Cost per segment count: the same appends and reads on a partition of 1
// segment and of 1,000 (more than the cache keeps open), which should
// cost the same within noise:
//
//	go test -run x -bench 'Segments' -count 6 ./logstore/

var benchSegmentCounts = []int{1, 1000}

// segmentedPartition returns a partition of about total bytes of 16 KiB
// batches spread over n segments, written through a file system without
// fsync (setup speed only), and reopened with opts and the real one.
func segmentedPartition(b *testing.B, n int, total int, opts Options) (*Store, *Partition, []byte) {
	b.Helper()
	dir := b.TempDir()
	tmpl := benchBatch(b, 16<<10)
	perSeg := max(total/n/len(tmpl), 1)
	build := Options{Fsync: FsyncNever, SegmentBytes: int64(perSeg*len(tmpl) + fileHeaderSize)}
	s, err := open(dir, build, noSyncFS{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := s.Partition(testTopic, 0)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := batch.Parse(tmpl)
	for range n * perSeg {
		if _, err := p.Append(tmpl, &h, nil); err != nil {
			b.Fatal(err)
		}
	}
	if got := p.Info().Segments; got != n {
		b.Fatalf("%d segments, want %d", got, n)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(dir, opts); err != nil {
		b.Fatal(err)
	}
	return s, s.Lookup(testTopic, 0), tmpl
}

// BenchmarkAppendSegments appends 16 KiB batches to the active segment of
// a partition that has 1 or 1,000 segments. Fsync is off: it would drown
// any difference.
func BenchmarkAppendSegments(b *testing.B) {
	for _, n := range benchSegmentCounts {
		b.Run(fmt.Sprintf("segments=%d", n), func(b *testing.B) {
			s, p, tmpl := segmentedPartition(b, n, n*16<<10, Options{Fsync: FsyncNever})
			defer s.Close()
			buf := append([]byte(nil), tmpl...)
			h, _ := batch.Parse(buf)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Append(buf, &h, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadSegments reads 64 MiB of 16 KiB batches sequentially, 64
// KiB at a time (what one segment of the 1,000 holds), from the page
// cache, through Read (a copy) and ReadSlice (no copy; the slice is
// released unread), over 1 or 1,000 segments. With 1,000 segments and the
// default cache of 128, every read opens a segment (and closes another):
// the cost of a cache miss, paid once per segment a reader moves to;
// "cached" has a cache that holds all 1,000.
func BenchmarkReadSegments(b *testing.B) {
	const total, maxBytes = 64 << 20, 64 << 10
	for _, c := range []struct {
		name    string
		n, open int
	}{{"segments=1", 1, 0}, {"segments=1000", 1000, 0}, {"segments=1000-cached", 1000, 1000}} {
		s, p, tmpl := segmentedPartition(b, c.n, total, Options{Fsync: FsyncNever, MaxOpenSegments: c.open})
		h, _ := batch.Parse(tmpl)
		for _, op := range []string{"Read", "ReadSlice"} {
			b.Run(fmt.Sprintf("%s/op=%s", c.name, op), func(b *testing.B) {
				b.SetBytes(int64(maxBytes / len(tmpl) * len(tmpl)))
				b.ReportAllocs()
				off := int64(0)
				for b.Loop() {
					var n int64
					if op == "Read" {
						data, err := p.Read(off, maxBytes)
						if err != nil {
							b.Fatal(err)
						}
						n = int64(len(data))
					} else {
						sl, err := p.ReadSlice(off, maxBytes)
						if err != nil {
							b.Fatal(err)
						}
						n = sl.Len
						sl.Release()
					}
					off += n / int64(len(tmpl)) * int64(h.Count)
					if off >= p.End() {
						off = 0
					}
				}
			})
		}
		s.Close()
	}
}

// BenchmarkSliceWriteTo sends 1 MiB slices with Slice.WriteTo to a sink
// that discards them: the copying path (pread + write), for comparison
// with Read.
func BenchmarkSliceWriteTo(b *testing.B) {
	s, p, _ := segmentedPartition(b, 1, 64<<20, Options{Fsync: FsyncNever})
	defer s.Close()
	sl, err := p.ReadSlice(0, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer sl.Release()
	b.SetBytes(sl.Len)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sl.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
