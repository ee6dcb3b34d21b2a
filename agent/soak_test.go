package agent

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"logship/logstore/batch"
)

// TestSIGKILLSoak kills the agent (a child process) with SIGKILL at random
// points while about 50,000 lines/s are written to four files that are
// rotated by rename as they go, restarts it each time, and at the end
// checks that every line is stored by the real aggregator exactly once,
// in order within each source. Rounds: 2, or LOGSHIP_SOAK_ROUNDS (make
// soak runs 10).
func TestSIGKILLSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("LOGSHIP_SOAK_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	r := newRig(t, "*.log*")
	cfg := childConfig{
		ID: "soak", StateDir: r.opts.StateDir, Aggregators: []string{r.agg.addr},
		Compression: batch.Zstd, BatchBytes: 64 << 10, WindowBytes: 1 << 20,
		ScanInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		PositionsInterval: 50 * time.Millisecond,
		Inputs:            r.opts.Inputs,
		LogPath:           filepath.Join(r.dir, "agent.log"),
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfg.LogPath)
			t.Logf("agent log:\n%s", b)
		}
	})

	// The writer: 4 files, 500 lines each every 40ms (50,000 lines/s in
	// all), each file rotated (renamed to name.log.N, still matched by the
	// glob) every 20,000 of its lines.
	names := []string{"w0", "w1", "w2", "w3"}
	ws := make([]*logWriter, len(names))
	for i, n := range names {
		ws[i] = newLogWriter(t, r.path(n+".log"), n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(40 * time.Millisecond) // load pacing
		defer tick.Stop()
		rot := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, w := range ws {
				w.write(500)
				if w.seq%20000 == 0 {
					rot++
					w.rotate(w.path+"."+strconv.Itoa(rot), 50)
				}
			}
		}
	}()

	for i := range rounds {
		cmd := startChild(t, r.dir, cfg)
		// Kill at a random point: the wait is what makes the point random.
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("round %d: killed; %d records stored", i+1, r.stored())
	}
	close(stop)
	wg.Wait()
	want := map[string]int{}
	total := 0
	for _, w := range ws {
		want[w.stream] = w.seq
		total += w.seq
	}

	cmd := startChild(t, r.dir, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for r.stored() < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a condition
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("final agent: %v", err)
	}
	checkStreams(t, readAggregator(t, r.agg.addr), want, nil)
	if st := r.agg.s.Stats(); st.Gaps != 0 {
		t.Errorf("aggregator stats %+v: gaps", st)
	}
}
