package agent

import (
	"cmp"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// An agent that failed over moves back to its home aggregator once home
// takes connections again, so that a fleet spreads over the list again
// after an aggregator's restart (Vector #6653: connections stay pinned).
// It moves only once every batch in flight is acknowledged: here the other
// aggregator has stored batches whose acks it holds when home comes back,
// and sending those batches home as well would store them twice. Every
// line is stored exactly once across the two: home holds the lines before
// the failover and after the return, the other one those between.
func TestMovesBackHomeAfterFailover(t *testing.T) {
	dir := t.TempDir()
	home := startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0")
	// Home is reached through a proxy that can refuse connections, as a
	// stopped aggregator does; the other aggregator is a fake that can
	// hold its acks.
	proxy := wiretest.NewProxy(t, home.addr)
	defer proxy.Close()
	other := newFakeAgg(t)
	opts := testOpts(t, dir)
	var logs *testLog
	opts.Logger, logs = newTestLog(t)
	opts.Aggregators = []string{other.addr(), other.addr()}
	opts.Aggregators[homeIndex(opts.ID, 2)] = proxy.Addr()
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string {
		recs := readStored(t, home.addr, true)
		var out []string
		for _, s := range recs {
			out = append(out, s.records...)
		}
		for _, s := range other.snapshot() {
			out = append(out, s.records...)
		}
		return out
	}

	w.write(100)
	waitFor(t, "lines on home", func() bool { return len(all()) == 100 })
	if got := ag.ConnStats().Aggregator; got != proxy.Addr() {
		t.Fatalf("connected to %s, want home %s", got, proxy.Addr())
	}

	proxy.SetRefuse(true) // home stops
	proxy.Cut()
	waitFor(t, "failover", func() bool { return ag.ConnStats().Failovers == 1 && ag.ConnStats().Connected })
	w.write(100)
	waitFor(t, "lines on the other aggregator", func() bool { return other.records() == 100 })

	other.setHold(true) // stored, not acknowledged
	w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return other.records() == 150 })
	proxy.SetRefuse(false) // home is back
	waitFor(t, "the agent deciding to move", func() bool { return strings.Contains(logs.String(), "moving back once the batches in flight") })
	if st := ag.ConnStats(); st.Aggregator == proxy.Addr() {
		t.Fatalf("moved home with batches in flight: %+v", st)
	}
	other.setHold(false)
	waitFor(t, "back home", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == proxy.Addr()
	})
	w.write(100)
	waitFor(t, "lines on home again", func() bool { return len(all()) >= 350 })
	waitFor(t, "idle", ag.Idle)

	recs := all()
	seq := func(r string) int {
		f := strings.Fields(r)
		if len(f) < 2 {
			return -1
		}
		n, _ := strconv.Atoi(f[1])
		return n
	}
	slices.SortStableFunc(recs, func(a, b string) int { return cmp.Compare(seq(a), seq(b)) })
	checkStreams(t, map[uint64]*fakeSource{1: {records: recs}}, map[string]int{"a": 350}, nil)
	if st := ag.ConnStats(); st.SessionsLost != 1 || st.Failovers != 2 {
		t.Errorf("stats %+v: want one session lost (the cut) and two moves (away, back)", st)
	}
}
