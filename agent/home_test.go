package agent

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"logship/internal/statefile"
	"logship/internal/wire/wiretest"
)

// The tests of the move back home after a failover (conn.go goHome,
// copytrunc.go moveSafe): every line must be stored exactly once across
// the two aggregators, and the agent must not stay away for good.

// homeRig is an agent whose home aggregator, a real one, is reached
// through a proxy that can refuse connections (as a stopped aggregator
// does), and whose other aggregator is a fake that can hold its acks,
// reached through a proxy of its own (otherProxy) when a test cuts that
// connection too. The agent tails dir/a.log* (copytruncate's copies
// included), written by w, and looks at home every 20ms while away.
type homeRig struct {
	dir        string
	home       *realAgg
	proxy      *wiretest.Proxy // home's address
	other      *fakeAgg
	otherProxy *wiretest.Proxy // nil unless asked for
	opts       Options
	logs       *testLog
	w          *logWriter
}

func newHomeRig(t *testing.T, otherViaProxy bool) *homeRig {
	t.Helper()
	dir := t.TempDir()
	r := &homeRig{dir: dir, home: startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0"), other: newFakeAgg(t)}
	r.proxy = wiretest.NewProxy(t, r.home.addr)
	otherAddr := r.other.addr()
	if otherViaProxy {
		r.otherProxy = wiretest.NewProxy(t, otherAddr)
		otherAddr = r.otherProxy.Addr()
	}
	r.opts = testOpts(t, dir)
	r.opts.Logger, r.logs = newTestLog(t)
	r.opts.Aggregators = homeFirst(r.opts.ID, r.proxy.Addr(), otherAddr)
	r.opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "a.log*")}}}
	r.w = newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	return r
}

// start starts the agent with r.opts.
func (r *homeRig) start(t *testing.T) *runningAgent {
	t.Helper()
	return startAgentWith(t, r.opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
}

// stored returns every record the two aggregators store.
func (r *homeRig) stored(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range readStored(t, r.home.addr, true) {
		out = append(out, s.records...)
	}
	for _, s := range r.other.snapshot() {
		out = append(out, s.records...)
	}
	return out
}

// logged waits until the agent's log says msg.
func (r *homeRig) logged(t *testing.T, what, msg string) {
	t.Helper()
	waitFor(t, what, func() bool { return strings.Contains(r.logs.String(), msg) })
}

// waitOn waits until the agent is connected to addr.
func waitOn(t *testing.T, ag *runningAgent, what, addr string) {
	t.Helper()
	waitFor(t, what, func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == addr
	})
}

// ackedAndSaved waits until the other aggregator acknowledged n lines and
// the positions file holds the whole file.
func (r *homeRig) ackedAndSaved(t *testing.T, ag *runningAgent, n int) {
	t.Helper()
	waitFor(t, "lines acknowledged by the other aggregator and saved", func() bool {
		if r.other.records() != n || !ag.Idle() {
			return false
		}
		fi, err := os.Stat(r.w.path)
		return err == nil && savedPos(t, r.opts.StateDir, r.w.path) == fi.Size()
	})
}

// copyAside is the copy of copytruncate, under a name no glob matches, to
// be moved in later (moveCopyIn): a copy the agent finds late.
func (r *homeRig) copyAside(t *testing.T) string {
	t.Helper()
	tmp := filepath.Join(r.dir, "copy.tmp")
	copyFile(t, r.w.path, tmp)
	return tmp
}

// truncate is the truncation of copytruncate; it waits until the agent
// saw it.
func (r *homeRig) truncate(t *testing.T) {
	t.Helper()
	if err := r.w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	r.logged(t, "truncation seen", "file truncated")
}

func (r *homeRig) moveCopyIn(t *testing.T, tmp string) {
	t.Helper()
	if err := os.Rename(tmp, filepath.Join(r.dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
}

// startAway starts the agent with home down, so that it fails over, and
// writes 100 lines of stream a.
func (r *homeRig) startAway(t *testing.T) *runningAgent {
	t.Helper()
	r.proxy.SetRefuse(true)
	ag := r.start(t)
	r.w.write(100)
	return ag
}

// homeAfterCopy checks that the agent keeps away from home until the
// copy of the truncated file (tmp) is resumed, then moves the copy in
// (a.log.1), waits for the move home, and finishes with aLines of a.
func (r *homeRig) homeAfterCopy(t *testing.T, ag *runningAgent, tmp, until string, aLines int) {
	t.Helper()
	stayAway(t, ag, r.proxy, until)
	r.moveCopyIn(t, tmp)
	waitOn(t, ag, "back home", r.proxy.Addr())
	r.finish(t, ag, aLines)
}

// finish writes 20 lines of a new stream b, waits until the two
// aggregators hold them and the aLines of stream a, with the copy of the
// truncated file resumed and the agent idle, and checks that they hold
// every line exactly once.
func (r *homeRig) finish(t *testing.T, ag *runningAgent, aLines int) {
	t.Helper()
	r.w.stream, r.w.seq = "b", 0
	r.w.write(20)
	waitFor(t, "everything stored", func() bool {
		return len(r.stored(t)) >= aLines+20 && strings.Contains(r.logs.String(), "copy of a truncated file") && ag.Idle()
	})
	checkOnce(t, r.stored(t), map[string]int{"a": aLines, "b": 20})
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

// logLine returns the first line of log that contains msg ("" if none).
func logLine(log, msg string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}

// savedPos returns the position the positions file in stateDir
// holds for the live file at path (-1: none).
func savedPos(t testing.TB, stateDir, path string) int64 {
	t.Helper()
	v, body, err := statefile.Read(filepath.Join(stateDir, positionsFile), positionsKind)
	if err != nil {
		return -1
	}
	pb, err := decodePositions(v, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pb.Sources {
		if e.Path == path && e.Inode != 0 {
			return e.Pos
		}
	}
	return -1
}

// An agent that failed over moves back to its home aggregator once home
// takes connections again, so that a fleet spreads over the list again
// after an aggregator's restart (Vector #6653: connections stay pinned).
// It moves only once every batch in flight is acknowledged: here the other
// aggregator has stored batches whose acks it holds when home comes back,
// and sending those batches home as well would store them twice. Every
// line is stored exactly once across the two: home holds the lines before
// the failover and after the return, the other one those between.
func TestMovesBackHomeAfterFailover(t *testing.T) {
	r := newHomeRig(t, false)
	ag := r.start(t)

	r.w.write(100)
	// Acknowledged before the cut: a batch home stored but did not ack
	// would go to the other aggregator too (what a failover costs).
	waitFor(t, "lines on home", func() bool { return len(r.stored(t)) == 100 && ag.Idle() })
	if got := ag.ConnStats().Aggregator; got != r.proxy.Addr() {
		t.Fatalf("connected to %s, want home %s", got, r.proxy.Addr())
	}

	r.proxy.SetRefuse(true) // home stops
	r.proxy.Cut()
	waitFor(t, "failover", func() bool { return ag.ConnStats().Failovers == 1 && ag.ConnStats().Connected })
	r.w.write(100)
	waitFor(t, "lines on the other aggregator", func() bool { return r.other.records() == 100 })

	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 150 })
	r.proxy.SetRefuse(false) // home is back
	r.logged(t, "the agent deciding to move", "moving back once the batches in flight")
	if st := ag.ConnStats(); st.Aggregator == r.proxy.Addr() {
		t.Fatalf("moved home with batches in flight: %+v", st)
	}
	// The line names where the agent is and where it goes (found in
	// review: it named only where it is, as if that were home).
	if line := logLine(r.logs.String(), "moving back once the batches in flight"); !strings.Contains(line, " aggregator="+r.other.addr()+" ") ||
		!strings.Contains(line, " home="+r.proxy.Addr()+" ") {
		t.Errorf("the decision to move names aggregator=%s (where it is) and home=%s (where it goes)?\n%s", r.other.addr(), r.proxy.Addr(), line)
	}
	r.other.setHold(false)
	waitOn(t, ag, "back home", r.proxy.Addr())
	r.w.write(100)
	waitFor(t, "lines on home again", func() bool { return len(r.stored(t)) >= 350 })
	waitFor(t, "idle", ag.Idle)

	checkOnce(t, r.stored(t), map[string]int{"a": 350})
	if st := ag.ConnStats(); st.SessionsLost != 1 || st.Failovers != 2 {
		t.Errorf("stats %+v: want one session lost (the cut) and two moves (away, back)", st)
	}
	// Everything was acknowledged when home went: the failover sends
	// nothing again, and nor does the move home.
	if line := logLine(r.logs.String(), "failing over to the next aggregator"); !strings.Contains(line, " resend_batches=0 resend_bytes=0") {
		t.Errorf("the failover line does not say that nothing is sent again:\n%s", line)
	}
	if n := ag.ConnStats().FailoverResentBytes; n != 0 {
		t.Errorf("FailoverResentBytes %d, want 0", n)
	}
}

// A failover with batches the aggregator left stored but unacknowledged
// sends them to the next aggregator, which stores them too (wire/doc.go,
// "Failover and exactly-once across aggregators"): the failover line says
// how many batches and bytes are sent again, and FailoverResentBytes
// counts those bytes. (Found in review: the line said nothing of them.)
func TestFailoverReportsWhatIsSentAgain(t *testing.T) {
	r := newHomeRig(t, true)
	ag := r.startAway(t) // on the other aggregator, through otherProxy
	r.ackedAndSaved(t, ag, 100)
	acked := savedPos(t, r.opts.StateDir, r.w.path)

	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	fi, err := os.Stat(r.w.path)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes := fi.Size() - acked
	waitFor(t, "50 lines stored, unacknowledged", func() bool {
		return r.other.records() == 150 && ag.Stats().InflightBytes == wantBytes
	})
	st := ag.Stats()
	wantBatches := st.Batches - st.AckedBatches

	r.otherProxy.SetRefuse(true) // the other aggregator goes...
	r.proxy.SetRefuse(false)     // ...while home is back
	r.otherProxy.Cut()
	waitOn(t, ag, "failed over home", r.proxy.Addr())
	waitFor(t, "the 50 lines stored at home too", func() bool {
		n := 0
		for _, s := range readStored(t, r.home.addr, true) {
			n += len(s.records)
		}
		return n == 50 && ag.Idle()
	})

	var line string
	for l := range strings.Lines(r.logs.String()) {
		if strings.Contains(l, "failing over to the next aggregator") && strings.Contains(l, " from="+r.otherProxy.Addr()+" ") {
			line = l
		}
	}
	want := fmt.Sprintf("aggregator=%s from=%s resend_batches=%d resend_bytes=%d", r.proxy.Addr(), r.otherProxy.Addr(), wantBatches, wantBytes)
	if !strings.Contains(line, want) {
		t.Errorf("failover line, want %q:\n%s", want, line)
	}
	if n := ag.ConnStats().FailoverResentBytes; n != wantBytes {
		t.Errorf("FailoverResentBytes %d, want %d", n, wantBytes)
	}
}

// A file truncated by copytruncate while its batches were in flight keeps
// the agent where it is until the copy is resumed past those batches: the
// copy resends from the last acknowledged position, which this aggregator
// drops as duplicates (it may have stored them) and home would store.
// (Found in review: the move waited for the acks only.)
func TestMoveHomeWaitsForTruncatedCopy(t *testing.T) {
	r := newHomeRig(t, false)
	ag := r.start(t)
	r.w.write(100)
	// Acknowledged before the cut: a batch home stored but did not ack
	// would go to the other aggregator too (what a failover costs).
	waitFor(t, "lines on home", func() bool { return len(r.stored(t)) == 100 && ag.Idle() })
	r.proxy.SetRefuse(true)
	r.proxy.Cut()
	waitFor(t, "failover", func() bool { return ag.ConnStats().Failovers == 1 && ag.ConnStats().Connected })
	r.w.write(100)
	waitFor(t, "lines on the other aggregator", func() bool { return r.other.records() == 100 && ag.Idle() })

	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 150 })
	// copytruncate, seen while those batches are in flight.
	tmp := r.copyAside(t)
	r.truncate(t)
	r.other.setHold(false)
	r.proxy.SetRefuse(false) // home is back, and looked at several times
	r.homeAfterCopy(t, ag, tmp, "the truncated file's copy was resumed", 250)
}

// A file copytruncated after its lines were acknowledged, but before the
// next positions write, leaves a ghost whose position (the last one the
// positions file fingerprinted) is behind what this aggregator holds: the
// agent stays until the copy is resumed and acknowledged past it, since the
// copy resends from that position. (Found in review.)
func TestMoveHomeWaitsForCopyBehindAcked(t *testing.T) {
	r := newHomeRig(t, false)
	r.opts.PositionsInterval = time.Hour
	ag := r.startAway(t)
	waitFor(t, "lines acknowledged by the other aggregator", func() bool { return r.other.records() == 100 && ag.Idle() })

	// copytruncate with nothing in flight.
	tmp := r.copyAside(t)
	r.truncate(t)
	r.proxy.SetRefuse(false) // home is back
	r.homeAfterCopy(t, ag, tmp, "the copy of a file truncated behind what this aggregator acknowledged is resumed", 100)
}

// A file truncated after a session was lost with batches the aggregator
// stored unacknowledged: the agent reconnects to the same aggregator, and
// stays until the copy is resumed and acknowledged past what was sent
// (sentHigh outlives the session). (Found in review.)
func TestMoveHomeWaitsForCopyAfterLostSession(t *testing.T) {
	r := newHomeRig(t, true)
	ag := r.startAway(t)
	r.ackedAndSaved(t, ag, 100)

	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 150 })
	r.otherProxy.SetRefuse(true) // the connection drops before the acks
	r.otherProxy.Cut()
	waitFor(t, "session lost", func() bool { return !ag.ConnStats().Connected })
	tmp := r.copyAside(t)
	r.truncate(t)
	r.other.setHold(false)
	r.otherProxy.SetRefuse(false) // the agent gets back to the same aggregator
	waitOn(t, ag, "reconnected to the other aggregator", r.otherProxy.Addr())
	r.proxy.SetRefuse(false) // home is back
	r.homeAfterCopy(t, ag, tmp, "the copy of a file truncated after a lost session is resumed", 150)
}

// A reload removes an input while its file's batches are stored but not
// acknowledged, and the session is lost: the entry released at the
// acknowledged position keeps the agent here until the input is added back
// and the file is acknowledged past what was sent. (Found in review.)
func TestMoveHomeWaitsForReleasedEntry(t *testing.T) {
	r := newHomeRig(t, true)
	app := Input{Topic: "app", Paths: []string{filepath.Join(r.dir, "a.log")}}
	keep := Input{Topic: "keep", Paths: []string{filepath.Join(r.dir, "z.log")}}
	r.opts.Inputs = []Input{app, keep}
	ag := r.startAway(t)
	waitFor(t, "lines acknowledged by the other aggregator", func() bool { return r.other.records() == 100 && ag.Idle() })

	r.other.setHold(true) // stored, not acknowledged
	r.w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 150 })
	if err := ag.Reload([]Input{keep}); err != nil {
		t.Fatal(err)
	}
	r.otherProxy.SetRefuse(true) // the connection drops before the acks
	r.otherProxy.Cut()
	r.logged(t, "file of the removed input closed", "input removed: file closed")
	r.other.setHold(false)
	r.otherProxy.SetRefuse(false) // back to the same aggregator
	waitOn(t, ag, "reconnected to the other aggregator", r.otherProxy.Addr())
	r.proxy.SetRefuse(false) // home is back
	stayAway(t, ag, r.proxy, "the file of the removed input is resumed")
	if err := ag.Reload([]Input{app, keep}); err != nil {
		t.Fatal(err)
	}
	waitOn(t, ag, "back home", r.proxy.Addr())
	waitFor(t, "everything stored", func() bool { return len(r.stored(t)) >= 150 && ag.Idle() })
	checkOnce(t, r.stored(t), map[string]int{"a": 150})
}

// Lines written between logrotate's copy and its truncation were sent but
// are in neither file: the copy's source is acknowledged only up to the
// copy's end, which is then where the wait ends (sentHigh is capped at the
// file's size), not for as long as the copy lies there. (Found in review.)
func TestMoveHomeAfterCopyShorterThanSent(t *testing.T) {
	r := newHomeRig(t, false)
	ag := r.startAway(t)
	r.ackedAndSaved(t, ag, 100)
	// copytruncate: logrotate copies the file; the application writes 50
	// more lines, which the agent sends (stored, acks held); then the
	// file is truncated. Those 50 lines are in no file any more.
	tmp := r.copyAside(t)
	r.other.setHold(true)
	r.w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return r.other.records() == 150 })
	r.truncate(t)
	r.other.setHold(false)
	r.moveCopyIn(t, tmp)
	waitFor(t, "copy resumed and acknowledged", func() bool {
		return strings.Contains(r.logs.String(), "copy of a truncated file") && ag.Idle()
	})

	r.proxy.SetRefuse(false) // home is back, and looked at many times
	n := r.proxy.Accepted()
	waitFor(t, "back home, or many probes", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == r.proxy.Addr() || r.proxy.Accepted() >= n+30
	})
	if st := ag.ConnStats(); st.Aggregator != r.proxy.Addr() {
		t.Fatalf("home took %d probes and the agent stays away (the copy's guard is past the copy's end): %+v", r.proxy.Accepted()-n, st)
	}
}

// A file copytruncated just after the agent moved home, before the next
// positions write: its ghost must resume at the acknowledged position,
// not at an older one whose lines only the aggregator left behind holds.
// The move writes the positions file (tails at the acknowledged
// positions) first. (Found in review.)
func TestCopyTruncateJustAfterMoveHome(t *testing.T) {
	r := newHomeRig(t, false)
	r.opts.PositionsInterval = time.Hour
	ag := r.startAway(t)
	waitFor(t, "lines acknowledged by the other aggregator", func() bool { return r.other.records() == 100 && ag.Idle() })

	r.proxy.SetRefuse(false) // home is back: nothing in flight, the move is safe
	waitOn(t, ag, "back home", r.proxy.Addr())
	// copytruncate right after the move; the copy is moved in later.
	tmp := r.copyAside(t)
	r.truncate(t)
	r.moveCopyIn(t, tmp)
	r.finish(t, ag, 100)
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
