package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"logship/internal/testlogs"
	"logship/logstore/batch"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg)) // this process is an agent started by a test
	}
	goleak.VerifyTestMain(m)
}

// testLog collects the agent's log; newTestLog prints it when the test
// fails.
type testLog = testlogs.Buffer

func newTestLog(t testing.TB) (*slog.Logger, *testLog) {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", l.String())
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// testOpts are options with short intervals for tests.
func testOpts(t testing.TB, dir string, aggs ...string) Options {
	log, _ := newTestLog(t)
	return Options{
		ID:                "host-1",
		StateDir:          filepath.Join(dir, "state"),
		Aggregators:       aggs,
		Compression:       batch.Zstd,
		BatchBytes:        4 << 10,
		BatchWait:         10 * time.Millisecond,
		WindowBytes:       256 << 10,
		ScanInterval:      20 * time.Millisecond,
		PollInterval:      5 * time.Millisecond,
		PositionsInterval: 20 * time.Millisecond,
		// Long enough that a test's incomplete line is never shipped
		// before the test completes it; tests of the timeout set it.
		PartialTimeout: time.Minute,
		Logger:         log,
	}
}

// runningAgent is an agent whose Run goroutine the test owns.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startAgent(t testing.TB, opts Options) *runningAgent {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; Run must return nil.
func (r *runningAgent) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logWriter writes numbered lines "stream seq padding\n" to a file, the way
// an application does: opened with O_APPEND, reopened after a rotation.
type logWriter struct {
	t      testing.TB
	path   string
	stream string
	seq    int
	f      *os.File
}

func newLogWriter(t testing.TB, path, stream string) *logWriter {
	t.Helper()
	w := &logWriter{t: t, path: path, stream: stream}
	w.open()
	t.Cleanup(func() { w.f.Close() })
	return w
}

func (w *logWriter) open() {
	w.t.Helper()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func lineFor(stream string, seq int) string {
	return fmt.Sprintf("%s %07d %s", stream, seq, strings.Repeat("x", seq%41))
}

// write appends n lines in one write call.
func (w *logWriter) write(n int) {
	w.t.Helper()
	var b strings.Builder
	for range n {
		w.seq++
		b.WriteString(lineFor(w.stream, w.seq))
		b.WriteByte('\n')
	}
	if _, err := w.f.WriteString(b.String()); err != nil {
		w.t.Fatal(err)
	}
}

// writeRaw appends bytes as they are.
func (w *logWriter) writeRaw(s string) {
	w.t.Helper()
	if _, err := w.f.WriteString(s); err != nil {
		w.t.Fatal(err)
	}
}

// rotate renames the file to newPath, writes late lines through the old
// descriptor (a writer that has not reopened yet), then reopens the path.
func (w *logWriter) rotate(newPath string, late int) {
	w.t.Helper()
	if err := os.Rename(w.path, newPath); err != nil {
		w.t.Fatal(err)
	}
	w.write(late)
	w.f.Close()
	w.open()
}

// checkStreams asserts that every stream's lines 1..want[stream] arrived
// exactly once, in order within each source, and that nothing else arrived
// except records for which extra returns true.
func checkStreams(t testing.TB, srcs map[uint64]*fakeSource, want map[string]int, extra func(string) bool) {
	t.Helper()
	got := map[string]map[int]int{}
	for id, s := range srcs {
		last := map[string]int{}
		for _, r := range s.records {
			f := strings.Fields(r)
			if len(f) < 2 {
				if extra == nil || !extra(r) {
					t.Errorf("source %016x (%s): unexpected record %q", id, s.path, r)
				}
				continue
			}
			stream := f[0]
			seq, err := strconv.Atoi(f[1])
			if _, ok := want[stream]; !ok || err != nil {
				if extra == nil || !extra(r) {
					t.Errorf("source %016x (%s): unexpected record %.60q", id, s.path, r)
				}
				continue
			}
			if r != lineFor(stream, seq) {
				t.Errorf("source %016x: record %q damaged", id, r)
			}
			if seq <= last[stream] {
				t.Errorf("source %016x (%s): %s %d after %d", id, s.path, stream, seq, last[stream])
			}
			last[stream] = seq
			if got[stream] == nil {
				got[stream] = map[int]int{}
			}
			got[stream][seq]++
		}
	}
	for stream, n := range want {
		missing, dup := 0, 0
		for i := 1; i <= n; i++ {
			switch c := got[stream][i]; {
			case c == 0:
				missing++
			case c > 1:
				dup++
			}
		}
		if len(got[stream]) > n {
			t.Errorf("%s: %d distinct lines, want %d", stream, len(got[stream]), n)
		}
		if missing > 0 || dup > 0 {
			t.Errorf("%s: %d lines missing, %d more than once (of %d)", stream, missing, dup, n)
		}
	}
}

func (f *fakeAgg) records() int { return f.counts().records }
