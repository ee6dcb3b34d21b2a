package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// BenchmarkAgentAlone measures the agent by itself, in a child process (so
// that its CPU time and peak RSS are its own), shipping 8 files of 150-byte
// lines with zstd to an aggregator that only counts the bytes it gets and
// acks. It reports lines/s (wall clock, with GOMAXPROCS=1: one core, and
// GOMAXPROCS=2), CPU seconds per GB of file bytes, and the child's peak
// RSS.
//
//	go test -run '^$' -bench AgentAlone -benchtime 3x ./agent/
func BenchmarkAgentAlone(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) { benchAgentAlone(b, procs) })
	}
}

func benchAgentAlone(b *testing.B, procs int) {
	const files, lineLen, fileBytes = 8, 150, 64 << 20
	dir := b.TempDir()
	var lines int64
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("app-%d.log", i))
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for n := 0; n < fileBytes; n += lineLen {
			line := fmt.Sprintf("2024-05-01T12:00:%02d.%06dZ INFO request id=%08x path=/api/v1/items/%d status=200 bytes=%d user=%d",
				n%60, n%1000000, uint32(n*2654435761), n%5000, n%70000, n%9000)
			line += strings.Repeat("-", lineLen-1-len(line)) + "\n"
			w.WriteString(line)
			lines++
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	total := int64(files) * int64((fileBytes+lineLen-1)/lineLen*lineLen)
	run := runAgentChild(b, dir, total, procs)
	n := float64(b.N)
	b.ReportMetric(float64(lines)*n/run.wall.Seconds(), "lines/s")
	b.ReportMetric(run.cpu.Seconds()/n/(float64(total)/1e9), "CPU-s/GB")
	b.ReportMetric(float64(run.maxrss)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(total)*n/run.wall.Seconds()/1e6, "MB/s")
}

// childRun is what runAgentChild measured over b.N runs.
type childRun struct {
	wall, cpu   time.Duration // summed over the runs
	maxrss, hwm int64         // the largest ru_maxrss and VmHWM, KiB
}

// runAgentChild runs the agent in a child process with GOMAXPROCS=procs
// b.N times, each with fresh state, tailing dir/*.log into an aggregator
// that only counts, until it has received total file bytes.
func runAgentChild(b *testing.B, dir string, total int64, procs int) childRun {
	fa := newFakeAgg(b)
	fa.countOnly = true
	var r childRun
	for i := 0; b.Loop(); i++ {
		fa.mu.Lock()
		fa.rawIn = 0
		fa.mu.Unlock()
		cfg := childConfig{
			ID: "bench", StateDir: filepath.Join(dir, fmt.Sprintf("state-%d", i)),
			Aggregators: []string{fa.addr()}, Compression: batch.Zstd,
			Inputs: []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}},
		}
		start := time.Now()
		cmd := startChild(b, dir, cfg, fmt.Sprintf("GOMAXPROCS=%d", procs))
		fa.mu.Lock()
		for fa.rawIn < total {
			fa.cond.Wait()
		}
		fa.mu.Unlock()
		r.wall += time.Since(start)
		r.hwm = max(r.hwm, vmHWM(b, cmd.Process.Pid))
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		r.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxrss = max(r.maxrss, ru.Maxrss) // KiB on Linux
	}
	return r
}
