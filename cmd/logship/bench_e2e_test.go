//go:build e2ebench

package main

// The end-to-end benchmark (make bench-e2e): realistic logs shipped by an
// agent process to an aggregator process (and optionally on to a file
// sink process), timed until every line is acknowledged and durable,
// beside `cat files | nc` in the same run. It prints one table. Run:
//
//	make bench-e2e
//	go test -tags e2ebench -run TestBenchE2E -v -timeout 60m ./cmd/logship -args -lines 5000000 -files 8

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"logship/internal/testlogs"
	"logship/sinks"
)

var (
	benchLines   = flag.Int("lines", 5_000_000, "lines to ship in all")
	benchFiles   = flag.Int("files", 8, "log files (the last one is a multi-line app log when there are several)")
	benchLineLen = flag.Int("line-len", 150, "approximate bytes per access-log line")
	benchSink    = flag.Bool("sink", false, "also run a file sink once every line is stored, and time it until every line is published")
	benchModes   = flag.String("modes", "always/zstd,always/s2,interval/zstd,interval/s2", "fsync/compression runs")
	benchProfile = flag.String("profile", "", "write CPU profiles of the agent and the aggregator (the first seconds of each run) to this directory")
	benchProfSec = flag.Int("profile-seconds", 3, "length of each CPU profile")
	benchHeap    = flag.Bool("heap", false, "with -profile: also fetch each process's heap profile just before it is stopped")
)

// benchResult is one row of the table.
type benchResult struct {
	name                string
	lines               int64
	rawBytes, wireBytes int64
	elapsed             time.Duration
	agentCPU, aggCPU    time.Duration // until every line was stored
	sinkCPU             time.Duration
	aggServeCPU         time.Duration // the aggregator's while it served the sink
	agentRSS, aggRSS    int64         // KiB
	sinkRSS             int64
	sinkElapsed         time.Duration
}

func TestBenchE2E(t *testing.T) {
	root := t.TempDir()
	logs := filepath.Join(root, "logs")
	lines, joined, raw := generateLogs(t, logs, *benchFiles, *benchLines, *benchLineLen)
	t.Logf("generated %d lines (%d records when stack traces are joined), %d MB in %d files", lines, joined, raw/1e6, *benchFiles)
	records := lines
	if appMultiline != "" {
		records = joined
	}

	var rows []benchResult
	base := baseline(t, logs, lines, raw)
	rows = append(rows, base)
	for _, m := range strings.Split(*benchModes, ",") {
		fsync, comp, _ := strings.Cut(m, "/")
		rows = append(rows, shipOnce(t, filepath.Join(root, strings.ReplaceAll(m, "/", "-")), logs, fsync, comp, lines, records, raw))
	}
	printBench(os.Stdout, rows, base)
}

// generateLogs writes n lines over files: nginx-style access lines, and in
// the last file (when there are several) a Java-style app log where one
// record in ten carries a stack trace. It returns the lines, the records
// once each stack trace is joined to its first line, and the bytes.
func generateLogs(t *testing.T, dir string, files, n, lineLen int) (lines, records, bytes int64) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t0 := testlogs.T0
	for f := range files {
		app := files > 1 && f == files-1
		name := fmt.Sprintf("access-%d.log", f)
		if app {
			name = "app.log"
		}
		fh, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(fh, 1<<20)
		per := n / files
		if f == files-1 {
			per = n - per*(files-1)
		}
		for i := 0; i < per; {
			ts := t0.Add(time.Duration(i) * time.Millisecond)
			var line string
			if app {
				line = fmt.Sprintf("%s INFO  [worker-%d] com.example.orders.Service - processed order %d in %dms for customer %d",
					ts.Format("2006-01-02 15:04:05.000"), r.IntN(32), r.IntN(1e9), r.IntN(500), r.IntN(1e6))
				if r.IntN(10) == 0 && i+4 < per {
					line = fmt.Sprintf("%s ERROR [worker-%d] com.example.orders.Service - order %d failed\n"+
						"java.lang.IllegalStateException: inventory %d is negative\n"+
						"\tat com.example.orders.Inventory.take(Inventory.java:%d)\n"+
						"\tat com.example.orders.Service.process(Service.java:%d)",
						ts.Format("2006-01-02 15:04:05.000"), r.IntN(32), r.IntN(1e9), r.IntN(1e4), r.IntN(400), r.IntN(400))
					i += 3
				}
			} else {
				line = testlogs.AccessLine(r, i, lineLen)
			}
			w.WriteString(line)
			w.WriteByte('\n')
			bytes += int64(len(line) + 1)
			i++
			lines += int64(strings.Count(line, "\n") + 1)
			records++
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	return lines, records, bytes
}

// baseline times `cat files | nc 127.0.0.1 port` into a reader that
// discards: the floor of moving these bytes over loopback. CPU is that of
// the shell that runs the pipeline, which includes both; its RSS is not
// measured (ru_maxrss of the shell would be this process's own peak).
func baseline(t *testing.T, logs string, lines, raw int64) benchResult {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	name := "cat | nc (baseline)"
	script := fmt.Sprintf("cat %s/* | nc -N 127.0.0.1 %d", logs, port)
	if _, err := exec.LookPath("nc"); err != nil {
		// No netcat: bash's /dev/tcp does the same without nc's copy.
		name, script = "cat > /dev/tcp (baseline)", fmt.Sprintf("cat %s/* > /dev/tcp/127.0.0.1/%d", logs, port)
	}
	cmd := exec.Command("bash", "-c", script)
	begin := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("baseline: %v: %s", err, out)
	}
	n := <-got
	el := time.Since(begin)
	if n != raw {
		t.Fatalf("baseline moved %d bytes, want %d", n, raw)
	}
	return benchResult{name: name, lines: lines, rawBytes: raw, wireBytes: raw, elapsed: el,
		agentCPU: cpuOf(cmd.ProcessState)}
}

func cpuOf(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

// shipOnce runs an aggregator and an agent on logs with one fsync policy
// and compression, and times until the aggregator's partitions hold every
// line durably.
func shipOnce(t *testing.T, dir, logs, fsync, comp string, lines, records, raw int64) benchResult {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	metrics := ""
	if *benchProfile != "" {
		metrics = "metrics_listen = \"127.0.0.1:0\"\n"
	}
	agg, addr := startAggregator(t, dir, 4, fmt.Sprintf("fsync = %q\n", fsync))
	agentCfg := filepath.Join(dir, "agent.toml")
	writeFile(t, agentCfg, fmt.Sprintf(metrics+`id = "bench"
state_dir = %q
aggregators = [%q]
compression = %q
batch_bytes = "1MiB"
window_bytes = "16MiB"
[[input]]
topic = "access"
paths = [%q]
[[input]]
topic = "app"
paths = [%q]
%s`, filepath.Join(dir, "agent"), addr, comp, filepath.Join(logs, "access-*.log"), filepath.Join(logs, "app.log"), appMultiline))
	c, err := sinks.Dial(context.Background(), addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	ag := start(t, "agent", "agent", "--config", agentCfg)
	profiled := make(chan struct{})
	name := strings.ReplaceAll(fsync+"-"+comp, "/", "-")
	if *benchProfile != "" {
		var profiles sync.WaitGroup
		profiles.Go(func() { profile(t, agg, filepath.Join(*benchProfile, name+"-aggregator.pprof"), "profile") })
		profile(t, ag, filepath.Join(*benchProfile, name+"-agent.pprof"), "profile")
		go func() {
			profiles.Wait()
			close(profiled)
		}()
	} else {
		close(profiled)
	}
	var stored int64
	waitFor(t, "every line stored", 10*time.Minute, func() bool {
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stored = 0
		for _, p := range st.Partitions {
			stored += p.EndOffset
		}
		return stored >= records
	})
	elapsed := time.Since(begin)
	// CPU until every line is stored, read while both still run: the
	// aggregator's later work for a sink is not shipping.
	agentCPU, aggCPU := procCPU(t, ag), procCPU(t, agg)
	<-profiled
	st, _ := c.Status(context.Background())
	var wire int64
	for _, p := range st.Partitions {
		wire += p.Bytes
	}
	res := benchResult{name: fsync + " / " + comp, lines: lines, rawBytes: raw, wireBytes: wire, elapsed: elapsed}
	if *benchSink {
		// The sink starts once every line is stored, so that its time
		// is its own (fetch, decompress, write, publish), not the
		// agent's; it includes idle_timeout (200ms) before the last
		// files are published.
		out := filepath.Join(dir, "archive")
		sinkCfg := filepath.Join(dir, "sinks.toml")
		writeFile(t, sinkCfg, fmt.Sprintf(metrics+"aggregators = [%q]\n[[sink]]\nname = \"bench\"\ntype = \"file\"\ntopics = [\"access\", \"app\"]\ndir = %q\nidle_timeout = \"200ms\"\n", addr, out))
		sinkBegin := time.Now()
		sink := start(t, "sink", "sink", "--config", sinkCfg)
		var sinkProfiled sync.WaitGroup
		if *benchProfile != "" {
			sinkProfiled.Go(func() { profile(t, sink, filepath.Join(*benchProfile, name+"-sink.pprof"), "profile") })
		}
		published := newLineCounter(out)
		waitFor(t, "every line published", 10*time.Minute, func() bool { return published.count() >= lines })
		res.sinkElapsed = time.Since(sinkBegin)
		res.aggServeCPU = procCPU(t, agg) - aggCPU
		sinkProfiled.Wait()
		heap(t, sink, name)
		res.sinkRSS = vmHWM(t, sink)
		sink.stop(syscall.SIGTERM)
		res.sinkCPU = cpuOf(sink.cmd.ProcessState)
	}
	// Peak RSS from each child's VmHWM: ru_maxrss of an os/exec child
	// includes this process's peak at the fork (the child shares its
	// memory until exec).
	heap(t, ag, name)
	heap(t, agg, name)
	res.agentRSS, res.aggRSS = vmHWM(t, ag), vmHWM(t, agg)
	if err := ag.stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := agg.stop(syscall.SIGTERM); err != nil {
		t.Errorf("aggregator: %v", err)
	}
	res.agentCPU, res.aggCPU = agentCPU, aggCPU
	if stored != records {
		t.Errorf("%s: %d records stored, want %d", res.name, stored, records)
	}
	return res
}

// appMultiline is the app input's multiline rule: a record starts with a
// date. Empty: every line is a record.
const appMultiline = ""

// vmHWM returns the peak resident set (KiB) of the running process p so
// far, from VmHWM in /proc/PID/status.
// procCPU is the user and system CPU a running child used so far, from
// /proc/PID/stat (in USER_HZ ticks, 100 a second on Linux).
func procCPU(t *testing.T, p *proc) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Errorf("%s: %v", p.name, err)
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		t.Errorf("%s: short /proc/PID/stat", p.name)
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Errorf("%s: /proc/PID/stat: %v %v", p.name, err1, err2)
	}
	return time.Duration(utime+stime) * time.Second / 100
}

func vmHWM(t *testing.T, p *proc) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Errorf("%s: %v", p.name, err)
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Errorf("%s: VmHWM: %v", p.name, err)
			}
			return kib
		}
	}
	t.Errorf("%s: no VmHWM in /proc/PID/status", p.name)
	return 0
}

// heap fetches p's heap profile into the profile directory, with -heap.
func heap(t *testing.T, p *proc, run string) {
	if *benchProfile != "" && *benchHeap {
		profile(t, p, filepath.Join(*benchProfile, run+"-"+p.name+"-heap.pprof"), "heap")
	}
}

// profile fetches a profile of p (kind "profile": CPU; "heap") from its
// metrics address into path.
func profile(t *testing.T, p *proc, path, kind string) {
	addr := logged(t, p, metricsRE, p.name+" metrics address")
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, *benchProfSec)
	if kind == "heap" {
		url = fmt.Sprintf("http://%s/debug/pprof/heap", addr)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("profile %s: %v", p.name, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("profile of the %s: %s (go tool pprof -top %s)", p.name, path, path)
}

// lineCounter counts the lines of the files published under dir. A
// published file never changes, so each is read once, in pieces: polling
// must not take the CPU (or the page cache) the sink is measured on.
type lineCounter struct {
	dir    string
	counts map[string]int64
	total  int64
	buf    []byte
}

func newLineCounter(dir string) *lineCounter {
	return &lineCounter{dir: dir, counts: map[string]int64{}, buf: make([]byte, 1<<20)}
}

// count returns the lines of every file published so far.
func (c *lineCounter) count() int64 {
	filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "_tmp" {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".log") {
			return nil
		}
		if _, ok := c.counts[p]; ok {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		var n int64
		for {
			k, err := f.Read(c.buf)
			n += int64(bytes.Count(c.buf[:k], []byte{'\n'}))
			if err != nil {
				break
			}
		}
		c.counts[p] = n
		c.total += n
		return nil
	})
	return c.total
}

func printBench(w io.Writer, rows []benchResult, base benchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tlines/s\traw MB/s\tvs baseline\twire MB\tratio\tagent CPU-s/GB\tagent RSS MiB\taggregator CPU-s/GB\taggregator RSS MiB\tsink lines/s\tsink raw MB/s\tsink CPU-s/GB\tsink RSS MiB\taggregator serving sink CPU-s/GB\t")
	gb := func(d time.Duration, raw int64) string { return fmt.Sprintf("%.2f", d.Seconds()/(float64(raw)/1e9)) }
	for _, r := range rows {
		ls := float64(r.lines) / r.elapsed.Seconds()
		sinkLS, sinkMB, sinkCPU, sinkRSS, agentRSS, aggRSS, serve := "-", "-", "-", "-", "-", "-", "-"
		if r.agentRSS > 0 {
			agentRSS = fmt.Sprintf("%.1f", float64(r.agentRSS)/1024)
		}
		if r.aggRSS > 0 {
			aggRSS = fmt.Sprintf("%.1f", float64(r.aggRSS)/1024)
		}
		if r.sinkElapsed > 0 {
			sinkLS, sinkCPU = fmt.Sprintf("%.0f", float64(r.lines)/r.sinkElapsed.Seconds()), gb(r.sinkCPU, r.rawBytes)
			sinkMB = fmt.Sprintf("%.0f", float64(r.rawBytes)/1e6/r.sinkElapsed.Seconds())
			sinkRSS = fmt.Sprintf("%.1f", float64(r.sinkRSS)/1024)
			serve = gb(r.aggServeCPU, r.rawBytes)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2fx\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, ls, float64(r.rawBytes)/1e6/r.elapsed.Seconds(),
			ls/(float64(base.lines)/base.elapsed.Seconds()), float64(r.wireBytes)/1e6, float64(r.rawBytes)/float64(r.wireBytes),
			gb(r.agentCPU, r.rawBytes), agentRSS, gb(r.aggCPU, r.rawBytes), aggRSS, sinkLS, sinkMB, sinkCPU, sinkRSS, serve)
	}
	tw.Flush()
	fmt.Fprintln(w, "CPU of the baseline row is the pipeline's (shell, cat and nc); the agent's and the aggregator's are until every line is stored. RSS is each process's VmHWM. Wire MB: bytes stored by the aggregator (the batches as sent).")
}
