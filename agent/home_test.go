package agent

import (
	"cmp"
	"os"
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
	opts.Aggregators = homeFirst(opts.ID, proxy.Addr(), other.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string { return storedOn(t, home.addr, other) }

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

	checkOnce(t, all(), map[string]int{"a": 350})
	if st := ag.ConnStats(); st.SessionsLost != 1 || st.Failovers != 2 {
		t.Errorf("stats %+v: want one session lost (the cut) and two moves (away, back)", st)
	}
}

// storedOn returns every record a real aggregator at addr and a fake one
// store.
func storedOn(t *testing.T, addr string, fake *fakeAgg) []string {
	t.Helper()
	var out []string
	for _, s := range readStored(t, addr, true) {
		out = append(out, s.records...)
	}
	for _, s := range fake.snapshot() {
		out = append(out, s.records...)
	}
	return out
}

// checkOnce checks that recs, from one file's lines stored on several
// aggregators, hold every line of want exactly once.
func checkOnce(t *testing.T, recs []string, want map[string]int) {
	t.Helper()
	seq := func(r string) int {
		f := strings.Fields(r)
		if len(f) < 2 {
			return -1
		}
		n, _ := strconv.Atoi(f[1])
		return n
	}
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.Fields(a)[0], strings.Fields(b)[0]), cmp.Compare(seq(a), seq(b)))
	})
	checkStreams(t, map[uint64]*fakeSource{1: {records: recs}}, want, nil)
}

// A file truncated by copytruncate while its batches were in flight keeps
// the agent where it is until the copy is resumed past those batches: the
// copy resends from the last acknowledged position, which this aggregator
// drops as duplicates (it may have stored them) and home would store.
// (Found in review: the move waited for the acks only.)
func TestMoveHomeWaitsForTruncatedCopy(t *testing.T) {
	dir := t.TempDir()
	homeAgg := startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0")
	proxy := wiretest.NewProxy(t, homeAgg.addr)
	defer proxy.Close()
	other := newFakeAgg(t)
	opts := testOpts(t, dir)
	var logs *testLog
	opts.Logger, logs = newTestLog(t)
	opts.Aggregators = homeFirst(opts.ID, proxy.Addr(), other.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "a.log*")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string { return storedOn(t, homeAgg.addr, other) }
	w.write(100)
	waitFor(t, "lines on home", func() bool { return len(all()) == 100 })
	proxy.SetRefuse(true)
	proxy.Cut()
	waitFor(t, "failover", func() bool { return ag.ConnStats().Failovers == 1 && ag.ConnStats().Connected })
	w.write(100)
	waitFor(t, "lines on the other aggregator", func() bool { return other.records() == 100 && ag.Idle() })

	other.setHold(true) // stored, not acknowledged
	w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return other.records() == 150 })
	// copytruncate, seen while those batches are in flight; the copy is
	// made under a name no glob matches, to be moved in later.
	tmp := filepath.Join(dir, "copy.tmp")
	copyFile(t, w.path, tmp)
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "truncation seen", func() bool { return strings.Contains(logs.String(), "file truncated") })
	other.setHold(false)
	proxy.SetRefuse(false) // home is back, and looked at several times
	n := proxy.Accepted()
	waitFor(t, "probes of home", func() bool {
		return proxy.Accepted() >= n+3 || ag.ConnStats().Aggregator == proxy.Addr()
	})
	if st := ag.ConnStats(); st.Aggregator == proxy.Addr() {
		t.Fatalf("moved home before the truncated file's copy was resumed: %+v", st)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back home", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == proxy.Addr()
	})
	w.stream, w.seq = "b", 0
	w.write(20)
	waitFor(t, "everything stored", func() bool { return len(all()) >= 270 && ag.Idle() })
	checkOnce(t, all(), map[string]int{"a": 250, "b": 20})
}

// A probe of a home that does not answer (a host down, a blackholed
// route) gives up as soon as the current session ends, so that the agent
// reconnects after its backoff, not after the probe's dial timeout (5s).
// (Found in review.)
func TestProbeOfSilentHomeDoesNotDelayReconnect(t *testing.T) {
	dir := t.TempDir()
	homeAgg, otherAgg := newFakeAgg(t), newFakeAgg(t)
	home := wiretest.NewProxy(t, homeAgg.addr())
	other := wiretest.NewProxy(t, otherAgg.addr())
	opts := testOpts(t, dir)
	opts.Aggregators = homeFirst(opts.ID, home.Addr(), other.Addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	home.SetRefuse(true) // home is down at start: the agent fails over
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	w.write(10)
	waitFor(t, "lines on the other aggregator", func() bool { return otherAgg.records() == 10 })

	home.SetBlackhole(true) // takes connections, answers nothing
	home.SetRefuse(false)
	n := home.Accepted()
	waitFor(t, "a probe of home in progress", func() bool { return home.Accepted() > n })
	connects := ag.ConnStats().Connects
	began := time.Now()
	other.Cut()
	waitFor(t, "reconnected", func() bool { return ag.ConnStats().Connects > connects })
	if took := time.Since(began); took >= dialTimeout {
		t.Errorf("reconnected %s after the session ended: the probe of home held it up", took)
	}
}

// stayAway waits until home (behind proxy) has been looked at a few times
// and checks that the agent is still away: it must not move before what
// until says.
func stayAway(t *testing.T, ag *runningAgent, proxy *wiretest.Proxy, until string) {
	t.Helper()
	n := proxy.Accepted()
	waitFor(t, "probes of home", func() bool {
		return proxy.Accepted() >= n+3 || ag.ConnStats().Aggregator == proxy.Addr()
	})
	if st := ag.ConnStats(); st.Aggregator == proxy.Addr() {
		t.Fatalf("moved home before %s: %+v", until, st)
	}
}
