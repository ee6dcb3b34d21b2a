package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/logstore/batch"
)

// BenchmarkShip measures the agent end to end on one machine: read a file
// of typical log lines, batch, compress and send them to a fake aggregator
// that checks CRCs and acks, until everything is acknowledged.
//
//	go test -run XXX -bench Ship -count 6 ./agent/ | benchstat -
func BenchmarkShip(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "app.log")
	var sb strings.Builder
	for i := 0; sb.Len() < 64<<20; i++ {
		fmt.Fprintf(&sb, "2024-05-01T12:00:%02d.%06dZ INFO request id=%08x path=/api/v1/items/%d status=200 bytes=%d dur=%dus user_agent=\"Mozilla/5.0\"\n",
			i%60, i%1000000, i*2654435761, i%5000, i%70000, i%9000)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	size := int64(sb.Len())
	for _, comp := range []batch.Compression{batch.None, batch.S2, batch.Zstd} {
		b.Run("compression="+comp.String(), func(b *testing.B) {
			fa := newFakeAgg(b)
			fa.discard = true
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				a, err := New(Options{
					ID: "bench", StateDir: filepath.Join(dir, fmt.Sprintf("state-%s-%d", comp, i)),
					Aggregators: []string{fa.addr()}, Compression: comp,
					Inputs: []Input{{Topic: "app", Paths: []string{path}}},
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- a.Run(ctx) }()
				for a.Stats().AckedBytes < size {
					time.Sleep(time.Millisecond)
				}
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			fa.mu.Lock()
			b.ReportMetric(float64(fa.bytesIn)/float64(b.N)/float64(size), "wire/raw")
			fa.mu.Unlock()
		})
	}
}
