package logstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"logship/logstore/batch"
)

// BenchmarkOpenUnclean measures Open after an unclean shutdown, on a real
// file system, with real batches (incompressible payload, both CRCs valid)
// filling N segments of 16 MiB, the last one half full:
//
//   - checkpoint=clean: after a clean Close (nothing scanned);
//   - checkpoint=recovery-point: a crash after the last roll was
//     checkpointed (the last segment is scanned, the others trusted);
//   - checkpoint=none: a crash with no checkpoint (every older segment is
//     verified with whole batches after its last index entry, the last one
//     scanned).
//
// Comparing segments=10 with segments=100 shows whether open time follows
// the last segment or the whole log. The files are in the page cache
// (they were just written): this measures CPU (CRC, parsing) and system
// calls, not the disk. The log is written once per size, which takes a
// while (1.6 GiB for 100 segments):
//
//	go test -run x -bench OpenUnclean -benchtime 20x ./logstore/
func BenchmarkOpenUnclean(b *testing.B) {
	const segBytes = 16 << 20
	for _, nsegs := range []int{10, 100} {
		var dir string
		var end int64
		var unclean []byte // the checkpoint a crash after the last roll leaves
		parent := b
		setup := func(b *testing.B) {
			if dir != "" {
				return
			}
			dir = parent.TempDir() // lives as long as every sub-benchmark
			end, unclean = writeBenchLog(b, dir, segBytes, nsegs)
		}
		for _, mode := range []string{"clean", "recovery-point", "none"} {
			b.Run(fmt.Sprintf("segments=%d/checkpoint=%s", nsegs, mode), func(b *testing.B) {
				setup(b)
				opts := Options{SegmentBytes: segBytes, Fsync: FsyncNever}
				cp := filepath.Join(dir, checkpointName)
				pd := filepath.Join(dir, testTopic+"-0")
				b.SetBytes(int64(nsegs-1)*segBytes + segBytes/2)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					if mode != "clean" {
						// What a crash after the last roll leaves: no
						// snapshot at the end, no clean mark.
						os.Remove(filepath.Join(pd, snapshotName(end)))
						if err := os.WriteFile(cp, unclean, 0o644); err != nil {
							b.Fatal(err)
						}
						if mode == "none" {
							os.Remove(cp)
						}
					}
					b.StartTimer()
					s, err := Open(dir, opts)
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if p := s.Lookup(testTopic, 0); p.End() != end || len(p.Sources()) != 3 {
						b.Fatalf("End %d, want %d; %d sources", p.End(), end, len(p.Sources()))
					}
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// writeBenchLog writes nsegs segments of segBytes (the last half full) of
// 256 KiB batches of random bytes from three sources into a store at dir,
// closes it, and returns the end offset and the checkpoint as the roll to
// the last segment left it.
func writeBenchLog(b *testing.B, dir string, segBytes int64, nsegs int) (end int64, unclean []byte) {
	b.Helper()
	start := time.Now()
	s, err := Open(dir, Options{SegmentBytes: segBytes, Fsync: FsyncNever, CheckpointInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	p, err := s.Partition(testTopic, 0)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, 256<<10-200)
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	bl, err := batch.NewBuilder(batch.None)
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	var written int64
	total := int64(nsegs-1)*segBytes + segBytes/2
	for i := 0; written < total; i++ {
		bl.Reset()
		bl.Add(int64(i), payload)
		src := uint64(i % 3)
		data, err := bl.Build(nil, batch.Meta{Agent: "bench", Topic: testTopic, Path: "/x", SourceID: src, RangeStart: int64(i), RangeEnd: int64(i + 1)})
		if err != nil {
			b.Fatal(err)
		}
		h, err := batch.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Append(data, &h, nil); err != nil {
			b.Fatal(err)
		}
		written += int64(len(data))
	}
	p.rw.RLock()
	n, lastBase := len(p.segs), p.segs[len(p.segs)-1].base
	p.rw.RUnlock()
	if n != nsegs {
		b.Fatalf("%d segments, want %d", n, nsegs)
	}
	end = p.End()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	unclean = encodeCheckpoint(map[partKey]recoveryPoint{{testTopic, 0}: {base: lastBase, pos: fileHeaderSize, next: lastBase}})
	if _, err := os.Stat(filepath.Join(dir, testTopic+"-0", snapshotName(lastBase))); errors.Is(err, os.ErrNotExist) {
		b.Fatal("no snapshot at the last roll")
	}
	b.Logf("wrote %d segments, %d MiB, in %v", n, written>>20, time.Since(start))
	return end, unclean
}
