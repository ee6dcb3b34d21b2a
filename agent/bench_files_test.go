package agent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkAgentAloneFiles is BenchmarkAgentAlone with many files: the
// agent by itself, in a child process, shipping 100 files of 150-byte
// lines (4 MiB each) at full speed with zstd to an aggregator that only
// counts. It checks the bound of issue 4, "RSS stays under 32 MiB while
// shipping 100 files at full speed", and reports lines/s, CPU seconds per
// GB and the child's peak RSS: VmHWM of /proc/PID/status, read once every
// file is shipped, before SIGTERM. (ru_maxrss from wait4, reported
// beside it, is not the agent's own: os/exec starts the child with
// CLONE_VM, and exec records the RSS high-water mark of the parent's
// memory, which it shared, into the child's maxrss; so it is at least the
// test binary's, parent-maxrss.) with the agent on one core
// (GOMAXPROCS=1, as BenchmarkAgentAlone) and on two.
//
//	go test -run '^$' -bench AgentAloneFiles -benchtime 3x ./agent/
func BenchmarkAgentAloneFiles(b *testing.B) {
	for _, files := range []int{100} {
		for _, procs := range []int{1, 2} {
			b.Run(fmt.Sprintf("files=%d/procs=%d", files, procs), func(b *testing.B) { benchAgentAloneFiles(b, files, procs) })
		}
	}
}

// benchAgentAloneFiles runs the agent child with GOMAXPROCS=procs.
func benchAgentAloneFiles(b *testing.B, files, procs int) {
	const lineLen, fileBytes = 150, 4 << 20
	dir := b.TempDir()
	// One block of lines, written after a first line of its own to each
	// file (the content is the usual one; each file is its own source
	// by its (device, inode) anyway).
	var block strings.Builder
	var blockLines int64
	for n := 0; block.Len() < fileBytes; n += lineLen {
		line := fmt.Sprintf("2024-05-01T12:00:%02d.%06dZ INFO request id=%08x path=/api/v1/items/%d status=200 bytes=%d user=%d",
			n%60, n%1000000, uint32(n*2654435761), n%5000, n%70000, n%9000)
		line += strings.Repeat("-", lineLen-1-len(line)) + "\n"
		block.WriteString(line)
		blockLines++
	}
	var lines, total int64
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("app-%03d.log", i))
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		first := fmt.Sprintf("file %03d starts here\n", i)
		w.WriteString(first)
		w.WriteString(block.String())
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		lines += 1 + blockLines
		total += int64(len(first) + block.Len())
	}
	run := runAgentChild(b, dir, total, procs)
	n := float64(b.N)
	b.ReportMetric(float64(lines)*n/run.wall.Seconds(), "lines/s")
	b.ReportMetric(run.cpu.Seconds()/n/(float64(total)/1e9), "CPU-s/GB")
	b.ReportMetric(float64(run.hwm)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(run.maxrss)/1024, "ru_maxrss-MiB")
	var self syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) == nil {
		b.ReportMetric(float64(self.Maxrss)/1024, "parent-maxrss-MiB")
	}
	b.ReportMetric(float64(total)*n/run.wall.Seconds()/1e6, "MB/s")
}

// vmHWM returns the peak resident set (KiB) of process pid so far, from
// VmHWM in /proc/PID/status.
func vmHWM(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib
		}
	}
	b.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
