package logstore

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"logship/logstore/batch"
)

// Benchmarks. BenchmarkAppend and its raw baseline BenchmarkRawWriteFdatasync
// run the same sizes and numbers of appenders, so one run compares them:
//
//	go test -run x -bench . ./logstore/ -benchtime 2s

var benchSizes = []struct {
	name string
	n    int
}{{"16KiB", 16 << 10}, {"256KiB", 256 << 10}, {"1MiB", 1 << 20}}

var benchAppenders = []int{1, 16}

// benchBatch builds an uncompressed batch of about size bytes of 1 KiB
// records.
func benchBatch(b *testing.B, size int) []byte {
	bl, err := batch.NewBuilder(batch.None)
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	rec := make([]byte, 1021) // + 3 bytes of varints = 1 KiB
	for i := range rec {
		rec[i] = 'a' + byte(i%26)
	}
	for bl.RawSize()+len(rec)+3+160 <= size {
		bl.Add(1, rec)
	}
	out, err := bl.Build(nil, batch.Meta{Agent: "bench", Topic: testTopic, Path: "/var/log/bench.log"})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// runAppenders runs fn(i) for i in [0, b.N) on n goroutines.
func runAppenders(b *testing.B, n int, setup func() func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		op := setup()
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				op()
			}
		})
	}
	wg.Wait()
}

// BenchmarkAppend is Append + WaitDurable with FsyncAlways: the
// aggregator's acknowledged append. fsyncs/op shows group commit at work.
func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range benchAppenders {
			b.Run(fmt.Sprintf("size=%s/appenders=%d", size.name, n), func(b *testing.B) {
				hfs := &hookFS{fileSystem: osFS{}}
				s, err := open(b.TempDir(), Options{Fsync: FsyncAlways}, hfs)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				p, err := s.Partition(testTopic, 0)
				if err != nil {
					b.Fatal(err)
				}
				tmpl := benchBatch(b, size.n)
				b.SetBytes(int64(len(tmpl)))
				b.ReportAllocs()
				syncs0 := hfs.syncs.Load()
				b.ResetTimer()
				runAppenders(b, n, func() func() {
					buf := append([]byte(nil), tmpl...) // Append stamps its batch
					h, err := batch.Parse(buf)
					if err != nil {
						b.Fatal(err)
					}
					return func() {
						res, err := p.Append(buf, &h, nil)
						if err == nil {
							err = p.WaitDurable(res.Next)
						}
						if err != nil {
							b.Error(err)
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(hfs.syncs.Load()-syncs0)/float64(b.N), "fsyncs/op")
			})
		}
	}
}

// BenchmarkRawWriteFdatasync is the floor for BenchmarkAppend: each append
// is a plain pwrite at the end of one file, then fdatasync, with no
// grouping.
func BenchmarkRawWriteFdatasync(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range benchAppenders {
			b.Run(fmt.Sprintf("size=%s/appenders=%d", size.name, n), func(b *testing.B) {
				f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				tmpl := benchBatch(b, size.n)
				b.SetBytes(int64(len(tmpl)))
				b.ReportAllocs()
				var mu sync.Mutex
				var end int64
				b.ResetTimer()
				runAppenders(b, n, func() func() {
					buf := append([]byte(nil), tmpl...)
					return func() {
						mu.Lock()
						pos := end
						end += int64(len(buf))
						mu.Unlock()
						_, err := f.WriteAt(buf, pos)
						if err == nil {
							err = fdatasync(f)
						}
						if err != nil {
							b.Error(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkRead reads a 64 MiB partition sequentially from the page cache.
func BenchmarkRead(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := s.Partition(testTopic, 0)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := benchBatch(b, 16<<10)
	h, _ := batch.Parse(tmpl)
	for range (64 << 20) / len(tmpl) {
		if _, err := p.Append(tmpl, &h, nil); err != nil {
			b.Fatal(err)
		}
	}
	for _, maxBytes := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("max=%dKiB", maxBytes>>10), func(b *testing.B) {
			b.SetBytes(int64(maxBytes / len(tmpl) * len(tmpl)))
			b.ReportAllocs()
			off := int64(0)
			for b.Loop() {
				data, err := p.Read(off, maxBytes)
				if err != nil {
					b.Fatal(err)
				}
				off += int64(len(data) / len(tmpl) * h.Count)
				if off >= p.End() {
					off = 0
				}
			}
		})
	}
}
