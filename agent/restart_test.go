package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/statefile"
	"logship/internal/wire/wiretest"
)

// Tests of the aggregator the positions file names (written in review).

// breakPositions makes every write of the positions file fail (its path
// is a directory, so the rename of the tmp file over it fails) and
// returns a function that puts the file as it was back.
func breakPositions(t *testing.T, stateDir string) (restore func()) {
	t.Helper()
	p := filepath.Join(stateDir, positionsFile)
	kept := p + ".review-kept"
	if err := os.Rename(p, kept); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(kept, p); err != nil {
			t.Fatal(err)
		}
	}
}

// crash stops the agent as a crash would, as far as the positions file
// goes: the final write of the positions file fails (breakPositions), so
// Run's error is expected and ignored.
func (r *runningAgent) crash(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

// Nothing is sent to an aggregator before the positions file names it
// (doc.go, "The positions file"), also when writing the file fails (a
// full state disk): otherwise a crash while the file still names the old
// aggregator sends the batches the new one stored without an ack to the
// old one too, which stores them twice. (Found in review: the agent sent
// on, and the write was retried at the next tick.)
func TestNothingSentToAnAggregatorThePositionsFileDoesNotName(t *testing.T) {
	r := newHomeRig(t, true)
	ag := r.start(t)
	r.w.write(100)
	r.onHomeSaved(t, ag, 100)

	restore := breakPositions(t, r.opts.StateDir) // e.g. the state disk is full
	r.other.setHold(true)                         // stored, not acknowledged
	r.proxy.SetRefuse(true)                       // home stops
	r.proxy.Cut()
	waitOn(t, ag, "failover", r.otherProxy.Addr())
	r.w.write(50)
	failed := func() int { return strings.Count(r.logs.String(), "write positions failed") }
	// Fixed, the agent sends nothing to the other aggregator while the
	// positions file cannot name it: the write is retried every
	// PositionsInterval (20ms), so 10 failures are 200ms of that.
	waitFor(t, "batches stored on the other aggregator, or the agent holding them back", func() bool {
		return r.other.records() == 50 || failed() >= 10
	})
	if n := r.other.records(); n > 0 {
		t.Errorf("the other aggregator stored %d lines while the positions file named %s (its write failed %d times)",
			n, r.proxy.Addr(), failed())
	}
	r.otherProxy.SetRefuse(true) // the other one goes away, acks never sent
	r.otherProxy.Cut()
	ag.crash(t)
	restore()

	r.proxy.SetRefuse(false) // home is back: the restarted agent dials it
	r.otherProxy.SetRefuse(false)
	r.other.setHold(false)
	ag = r.start(t)
	waitFor(t, "lines on home", func() bool { return len(r.stored(t)) >= 150 && ag.Idle() })
	checkOnce(t, r.stored(t), map[string]int{"a": 150})
}

// newThreeRig is a home aggregator (real), and two fakes, each behind a
// proxy, in a list where the first fake follows home and the second
// follows the first: a failover from home goes to the first fake, one
// from the first fake to the second.
type threeRig struct {
	*homeRig
	third      *fakeAgg
	thirdProxy *wiretest.Proxy
}

func newThreeRig(t *testing.T) *threeRig {
	t.Helper()
	r := &threeRig{homeRig: newHomeRig(t, true), third: newFakeAgg(t)}
	r.thirdProxy = wiretest.NewProxy(t, r.third.addr())
	h := homeIndex(r.opts.ID, 3)
	addrs := make([]string, 3)
	addrs[h] = r.proxy.Addr()
	addrs[(h+1)%3] = r.otherProxy.Addr()
	addrs[(h+2)%3] = r.thirdProxy.Addr()
	r.opts.Aggregators = addrs
	return r
}

// A restarted agent whose positions file names an aggregator that is now
// down fails over home, where a restart without that file would go, not
// to the list entry after the one named: with three aggregators, that is
// one it never sent anything to. (Found in review.)
func TestRestartWithLastAggregatorDownGoesHome(t *testing.T) {
	r := newThreeRig(t)
	ag := r.startAway(t)
	waitOn(t, ag, "failover to the entry after home", r.otherProxy.Addr())
	r.ackedAndSaved(t, ag, 100)
	ag.stop(t)
	if got := savedAggregator(t, r.opts.StateDir); got.Addr != r.otherProxy.Addr() {
		t.Fatalf("positions file names %+v, want %s", got, r.otherProxy.Addr())
	}

	r.otherProxy.SetRefuse(true) // the saved aggregator is down at the restart
	r.proxy.SetRefuse(false)     // home is up
	r.opts.HeartbeatInterval = time.Hour
	ag = startAgentWith(t, r.opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = time.Hour // no move home: where does the restart itself go?
	})
	waitFor(t, "connected", func() bool { return ag.ConnStats().Connected })
	if got := ag.ConnStats().Aggregator; got != r.proxy.Addr() {
		t.Errorf("restarted agent whose saved aggregator is down connected to %s, want home %s (third aggregator: %s)",
			got, r.proxy.Addr(), r.thirdProxy.Addr())
	}
}

// An agent restarted while away from home goes back first to the
// aggregator it last sent to, named in its positions file: that one may
// hold batches it never acknowledged (here stored with their acks held,
// then the connection cut and the agent stopped), which it drops as
// duplicates and home would store. Once everything the agent may have
// sent it before the restart is acknowledged there, the agent moves home:
// not sooner, though nothing of a file was sent since the restart (here
// the second file, behind the first in a window of one batch, while the
// first one's ack is held). Before, a restarted agent dialed home first.
func TestRestartGoesBackToLastAggregator(t *testing.T) {
	r := newHomeRig(t, true)
	w2 := newLogWriter(t, filepath.Join(r.dir, "a.log-b"), "b")
	ag := r.start(t)
	r.w.write(100)
	waitFor(t, "lines on home", func() bool { return len(r.stored(t)) == 100 && ag.Idle() })

	r.proxy.SetRefuse(true) // home stops
	r.proxy.Cut()
	waitOn(t, ag, "failover", r.otherProxy.Addr())
	r.w.write(100)
	w2.write(50)
	waitFor(t, "lines on the other aggregator", func() bool { return r.other.records() == 150 && ag.Idle() })
	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	w2.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 250 })
	r.otherProxy.SetRefuse(true) // the other one goes away too
	r.otherProxy.Cut()
	ag.stop(t)
	if got, want := savedAggregator(t, r.opts.StateDir), r.otherProxy.Addr(); got.Addr != want || got.ID == "" {
		t.Fatalf("positions file names aggregator %+v, want %s", got, want)
	}

	r.proxy.SetRefuse(false)
	r.otherProxy.SetRefuse(false)
	r.opts.BatchBytes, r.opts.WindowBytes = 256, 1 // one small batch in flight
	ag = r.start(t)
	waitOn(t, ag, "back on the other aggregator", r.otherProxy.Addr())
	stayAway(t, ag, r.proxy, "what the other one may hold is acknowledged")
	r.other.setHold(false)
	waitOn(t, ag, "back home", r.proxy.Addr())
	r.w.write(100)
	w2.write(20)
	waitFor(t, "lines on home again", func() bool { return len(r.stored(t)) >= 420 && ag.Idle() })
	checkOnce(t, r.stored(t), map[string]int{"a": 350, "b": 120})
}

// savedAggregator returns the aggregator the positions file in stateDir
// names.
func savedAggregator(t testing.TB, stateDir string) aggRef {
	t.Helper()
	v, body, err := statefile.Read(filepath.Join(stateDir, positionsFile), positionsKind)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := decodePositions(v, body)
	if err != nil {
		t.Fatal(err)
	}
	return pb.Aggregator
}

// While the positions file cannot be written and does not name the
// session's aggregator, nothing is read, and the write is tried again
// every PositionsInterval: the loop does not spin on the sources that are
// due meanwhile (hundreds of failed writes a second, each logged at
// ERROR, for as long as the state disk is full). (Found in review.)
// The sleep is the measurement window, not a synchronisation (as in
// TestIdleAgentDoesNotSpin).
func TestBlockedPositionsWriteDoesNotSpin(t *testing.T) {
	r := newHomeRig(t, true)
	// Every interval long: a loop that is not spinning turns a few times
	// in the window below.
	r.opts.PollInterval = 100 * time.Millisecond
	r.opts.ScanInterval = 100 * time.Millisecond
	r.opts.PositionsInterval = 100 * time.Millisecond
	ag := r.start(t)
	r.w.write(100)
	r.onHomeSaved(t, ag, 100)

	restore := breakPositions(t, r.opts.StateDir) // the state disk is full
	r.proxy.SetRefuse(true)                       // home stops: the agent fails over
	r.proxy.Cut()
	waitOn(t, ag, "failover", r.otherProxy.Addr())
	failed := func() int { return strings.Count(r.logs.String(), "write positions failed") }
	waitFor(t, "the positions write failing", func() bool { return failed() > 0 })

	const window = 500 * time.Millisecond
	f0, it0 := failed(), ag.loopIters.Load()
	time.Sleep(window)
	n, iters := failed()-f0, ag.loopIters.Load()-it0
	// Wakes: polls, scans and positions ticks, each every 100ms, each
	// trying the write once or twice: 30 in the window; allow 50.
	if max := 10 * int(window/r.opts.PollInterval); n > max {
		t.Errorf("the positions write failed %d times in %v (%d loop iterations), want at most %d: the loop spins while the file cannot name the aggregator",
			n, window, iters, max)
	}
	if got := r.other.records(); got != 0 {
		t.Errorf("the other aggregator stored %d lines while the positions file could not name it", got)
	}

	restore()
	r.w.write(10)
	waitFor(t, "lines on the other aggregator once the file can be written", func() bool {
		return r.other.records() == 10 && ag.Idle()
	})
	if got := savedAggregator(t, r.opts.StateDir); got.Addr != r.otherProxy.Addr() {
		t.Errorf("positions file names %+v, want %s", got, r.otherProxy.Addr())
	}
}

// A move home waits for the positions file to be written at the
// acknowledged positions; while that write fails the agent stays on the
// aggregator it is on, and goes on sending there: the file names that
// aggregator, which is healthy. Only the move is put off. (Found in
// review: nothing at all was sent while the state disk was full.)
func TestFailedSaveBeforeMoveHomeKeepsSending(t *testing.T) {
	r := newHomeRig(t, true)
	r.opts.HeartbeatInterval = time.Hour // no heartbeats in the way of the counted writes
	ag := r.startAway(t)
	waitOn(t, ag, "failover", r.otherProxy.Addr())
	r.ackedAndSaved(t, ag, 100)
	waitFor(t, "the positions file naming the other aggregator", func() bool {
		return savedAggregator(t, r.opts.StateDir).Addr == r.otherProxy.Addr()
	})

	restore := breakPositions(t, r.opts.StateDir) // the state disk is full
	t.Cleanup(restore)                            // before the agent's stop, which writes the file
	failed := func() int { return strings.Count(r.logs.String(), "write positions failed") }
	r.proxy.SetRefuse(false) // home is back: the agent drains to move
	r.logged(t, "the move home asked", "home aggregator takes connections again")
	f0 := failed()
	waitFor(t, "the positions write before the move failing", func() bool { return failed() > f0 })

	r.w.write(50)
	waitFor(t, "new lines on the other aggregator, which the positions file names", func() bool {
		return r.other.records() == 150
	})
}

// onHomeSaved waits until home stores n lines, all acknowledged, and the
// positions file holds the whole file and names home.
func (r *homeRig) onHomeSaved(t *testing.T, ag *runningAgent, n int) {
	t.Helper()
	waitFor(t, "lines on home, saved", func() bool {
		fi, err := os.Stat(r.w.path)
		return len(r.stored(t)) == n && ag.Idle() && err == nil && savedPos(t, r.opts.StateDir, r.w.path) == fi.Size() &&
			savedAggregator(t, r.opts.StateDir).Addr == r.proxy.Addr()
	})
}
