package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// A file truncated after a session was lost with batches the aggregator
// stored unacknowledged: the agent reconnects to the same aggregator, and
// stays until the copy is resumed and acknowledged past what was sent
// (sentHigh outlives the session). (Found in review.)
func TestMoveHomeWaitsForCopyAfterLostSession(t *testing.T) {
	dir := t.TempDir()
	homeAgg := startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0")
	home := wiretest.NewProxy(t, homeAgg.addr)
	defer home.Close()
	otherAgg := newFakeAgg(t)
	other := wiretest.NewProxy(t, otherAgg.addr())
	defer other.Close()
	opts := testOpts(t, dir)
	var logs *testLog
	opts.Logger, logs = newTestLog(t)
	opts.Aggregators = homeFirst(opts.ID, home.Addr(), other.Addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "a.log*")}}}
	home.SetRefuse(true) // home is down at start: the agent fails over
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string { return storedOn(t, homeAgg.addr, otherAgg) }
	w.write(100)
	waitFor(t, "lines acknowledged by the other aggregator and saved", func() bool {
		if otherAgg.records() != 100 || !ag.Idle() {
			return false
		}
		fi, err := os.Stat(w.path)
		return err == nil && savedPos(t, opts.StateDir, w.path) == fi.Size()
	})

	otherAgg.setHold(true) // stored, not acknowledged
	w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return otherAgg.records() == 150 })
	other.SetRefuse(true) // the connection drops before the acks
	other.Cut()
	waitFor(t, "session lost", func() bool { return !ag.ConnStats().Connected })
	tmp := filepath.Join(dir, "copy.tmp")
	copyFile(t, w.path, tmp)
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "truncation seen", func() bool { return strings.Contains(logs.String(), "file truncated") })
	otherAgg.setHold(false)
	other.SetRefuse(false) // the agent gets back to the same aggregator
	waitFor(t, "reconnected to the other aggregator", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == other.Addr()
	})
	home.SetRefuse(false) // home is back
	stayAway(t, ag, home, "the copy of a file truncated after a lost session is resumed")
	if err := os.Rename(tmp, filepath.Join(dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back home", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == home.Addr()
	})
	w.stream, w.seq = "b", 0
	w.write(20)
	waitFor(t, "everything stored", func() bool {
		return len(all()) >= 170 && strings.Contains(logs.String(), "copy of a truncated file") && ag.Idle()
	})
	checkOnce(t, all(), map[string]int{"a": 150, "b": 20})
}
