//go:build unix

package sinks_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"logship/aggregator"
	"logship/internal/testlogs"
	"logship/logstore"
	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/file"
)

// BenchmarkRunFile measures the consumer runtime and the file sink
// together against a real aggregator on loopback: the log of the
// partitions is written once (access-log lines of about 150 bytes in
// batches of 1 MiB raw, the agent's default, compressed as the
// sub-benchmark says), then each iteration consumes all of it into a new
// directory under a new sink name and stops once every record is
// published. MB/s is raw record bytes (newline included); the time
// includes the sink's start, the files' idle timeout (20ms) and its stop;
// cpu-s/GB is the CPU of the process (the sink and the aggregator serving
// it) per GB of records. parts=1 is one partition on its own: fetch,
// decode and write of one worker, nothing to overlap them with but each
// other.
//
//	go test -run '^$' -bench BenchmarkRunFile -count 6 ./sinks
func BenchmarkRunFile(b *testing.B) {
	for _, comp := range []batch.Compression{batch.Zstd, batch.S2} {
		for _, parts := range []int{1, 4} {
			b.Run(fmt.Sprintf("comp=%s/parts=%d", comp, parts), func(b *testing.B) {
				benchRunFile(b, comp, parts, 96<<20)
			})
		}
	}
}

func benchRunFile(b *testing.B, comp batch.Compression, parts int, rawTotal int) {
	aggDir := b.TempDir()
	ends, raw := fillStore(b, filepath.Join(aggDir, "log"), comp, parts, rawTotal)
	a, err := aggregator.New(aggregator.Options{ID: aggID, Listen: "127.0.0.1:0", DataDir: aggDir, Partitions: parts, Fsync: logstore.FsyncAlways})
	if err != nil {
		b.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	defer func() {
		acancel()
		<-adone
	}()

	b.SetBytes(raw)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	i := 0
	for b.Loop() {
		i++
		out := b.TempDir()
		fs, err := file.New(file.Options{Dir: out, IdleTimeout: 20 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		ws := newWatchSink(fs, ends)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- sinks.Run(ctx, sinks.Options{Name: fmt.Sprintf("bench-%d", i), Aggregators: []string{a.Addr()}, Topics: []string{"access"}}, ws)
		}()
		select {
		case <-ws.done:
		case err := <-done:
			b.Fatalf("Run returned early: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		fs.Close()
		// Not timed: the next iteration's files do not wait behind these
		// in the page cache.
		b.StopTimer()
		cpu := cpuTime(b)
		if err := os.RemoveAll(out); err != nil {
			b.Fatal(err)
		}
		cpu0 += cpuTime(b) - cpu
		b.StartTimer()
	}
	// CPU of the whole process: the sink and the aggregator serving it.
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()/(float64(raw)*float64(b.N)/1e9), "cpu-s/GB")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fillStore writes the log of topic "access": parts partitions of about
// rawTotal/parts bytes of records each. It returns each partition's end
// and the raw bytes in all (records and a newline each, as the sink
// writes them).
func fillStore(b *testing.B, dir string, comp batch.Compression, parts, rawTotal int) (map[int]int64, int64) {
	st, err := logstore.Open(dir, logstore.Options{Fsync: logstore.FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t0 := testlogs.T0
	ends := map[int]int64{}
	var raw int64
	var buf []byte
	for p := range parts {
		part, err := st.Partition("access", p)
		if err != nil {
			b.Fatal(err)
		}
		c, err := batch.NewCompressorSized(comp, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		bld, err := batch.NewBuilder(batch.None)
		if err != nil {
			b.Fatal(err)
		}
		var pos int64
		for n := 0; n < rawTotal/parts; {
			size := 0
			for size < 1<<20 {
				line := testlogs.AccessLine(r, n, 150)
				bld.Add(t0.UnixNano()+int64(n+size), []byte(line))
				size += len(line) + 1
			}
			n += size
			raw += int64(size)
			rs := bld.Take(nil)
			buf, err = c.Build(buf[:0], &rs, batch.Meta{Agent: "web-1", Topic: "access", Path: "/var/log/access.log", SourceID: uint64(p + 1), RangeStart: pos, RangeEnd: pos + int64(size)})
			if err != nil {
				b.Fatal(err)
			}
			pos += int64(size)
			h, err := batch.Parse(buf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := part.Append(buf, &h, nil); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		bld.Close()
		ends[p] = part.End()
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return ends, raw
}

// watchSink wraps a Sink and closes done once every partition of ends
// has reported its end published (from Tick or Close).
type watchSink struct {
	sinks.Sink
	ends    map[int]int64
	left    atomic.Int64
	done    chan struct{}
	once    sync.Once
	reached sync.Map // partition → true
}

func newWatchSink(s sinks.Sink, ends map[int]int64) *watchSink {
	w := &watchSink{Sink: s, ends: ends, done: make(chan struct{})}
	w.left.Store(int64(len(ends)))
	return w
}

func (w *watchSink) Open(ctx context.Context, p sinks.Partition) (sinks.PartitionWriter, int64, error) {
	pw, next, err := w.Sink.Open(ctx, p)
	if err != nil {
		return nil, next, err
	}
	return &watchWriter{PartitionWriter: pw, s: w, part: p.Partition}, next, nil
}

func (w *watchSink) published(part int, off int64) {
	if off < w.ends[part] {
		return
	}
	if _, had := w.reached.LoadOrStore(part, true); had {
		return
	}
	if w.left.Add(-1) == 0 {
		w.once.Do(func() { close(w.done) })
	}
}

type watchWriter struct {
	sinks.PartitionWriter
	s    *watchSink
	part int
}

func (w *watchWriter) Tick(ctx context.Context, now time.Time) (int64, error) {
	off, err := w.PartitionWriter.Tick(ctx, now)
	w.s.published(w.part, off)
	return off, err
}

func (w *watchWriter) Close(ctx context.Context) (int64, error) {
	off, err := w.PartitionWriter.Close(ctx)
	w.s.published(w.part, off)
	return off, err
}

// NextTick passes the file sink's TickDeadliner through.
func (w *watchWriter) NextTick() (time.Time, bool) {
	if d, ok := w.PartitionWriter.(sinks.TickDeadliner); ok {
		return d.NextTick()
	}
	return time.Time{}, false
}
