package agent

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"logship/logstore/batch"
)

// TestAggregatorStoppedAndRestarted: the real aggregator (in process) is
// stopped for aggDownFor (2s in make test, 30s with -tags slow, as make
// soak runs it) while about 50,000 lines/s are written to four files that
// are rotated by rename as they go, then started again on the same
// address and data. The files are the agent's buffer: every line is
// stored exactly once, in order within each source, and nothing is given
// up.
func TestAggregatorStoppedAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	r := newRig(t, "*.log*")
	opts := r.opts
	opts.BatchBytes, opts.WindowBytes = 64<<10, 1<<20
	opts.ScanInterval, opts.PollInterval, opts.PositionsInterval = 50*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
	opts.Compression = batch.Zstd
	var tl *testLog
	opts.Logger, tl = newTestLog(t)

	// The writer: 4 files, 500 lines each every 40ms (50,000 lines/s in
	// all), each rotated (renamed to name.log.N, still matched by the
	// glob) every 20,000 of its lines.
	names := []string{"w0", "w1", "w2", "w3"}
	ws := make([]*logWriter, len(names))
	for i, n := range names {
		ws[i] = newLogWriter(t, r.path(n+".log"), n)
	}
	var mu sync.Mutex // guards the writers' seq for the test goroutine
	written := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, w := range ws {
			n += w.seq
		}
		return n
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
			mu.Lock()
			for _, w := range ws {
				w.write(500)
				if w.seq%20000 == 0 {
					rot++
					w.rotate(w.path+"."+strconv.Itoa(rot), 50)
				}
			}
			mu.Unlock()
		}
	}()

	ag := startAgent(t, opts)
	waitFor(t, "batches stored", func() bool { return r.agg.s.Stats().Appended > 0 })
	r.agg.stop(t)
	before := written()
	// The scenario itself: the aggregator is down this long while the
	// writer goes on (not a wait for a condition).
	time.Sleep(aggDownFor)
	t.Logf("aggregator down for %v: %d lines written meanwhile", aggDownFor, written()-before)
	r.agg = startRealAgg(t, r.dataDir, r.agg.addr)
	// Writing goes on after the restart until the agent has caught up
	// with part of it, then stops.
	restart := written()
	waitFor(t, "batches stored after the restart", func() bool { return r.agg.s.Stats().Appended > 0 })
	for written() < restart+50000 {
		time.Sleep(40 * time.Millisecond) // the writer's pace: load, not synchronisation
	}
	close(stop)
	wg.Wait()
	want := map[string]int{}
	total := 0
	for _, w := range ws {
		want[w.stream] = w.seq
		total += w.seq
	}
	deadline := time.Now().Add(60 * time.Second)
	for !(ag.Idle() && r.stored() >= total) { // stored() reads everything: only once idle
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %d records stored, want %d", r.stored(), total)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition
	}
	checkStreams(t, readAggregator(t, r.agg.addr), want, nil)
	if st := r.agg.s.Stats(); st.Gaps != 0 {
		t.Errorf("aggregator stats %+v: gaps", st)
	}
	if st := ag.Stats(); st.GivenUpBytes != 0 {
		t.Errorf("agent stats %+v: bytes given up", st)
	}
	if !strings.Contains(tl.String(), "aggregator shutting down: reconnecting") {
		t.Error("the agent was never told the aggregator stops: it was not stopped under it, or closed without an Error frame")
	}
	t.Logf("%d lines, each stored once", total)
}
