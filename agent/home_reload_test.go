package agent

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// A reload removes an input while its file's batches are stored but not
// acknowledged, and the session is lost: the entry released at the
// acknowledged position keeps the agent here until the input is added back
// and the file is acknowledged past what was sent. (Found in review.)
func TestMoveHomeWaitsForReleasedEntry(t *testing.T) {
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
	app := Input{Topic: "app", Paths: []string{filepath.Join(dir, "a.log")}}
	keep := Input{Topic: "keep", Paths: []string{filepath.Join(dir, "z.log")}}
	opts.Inputs = []Input{app, keep}
	home.SetRefuse(true) // home is down at start: the agent fails over
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string { return storedOn(t, homeAgg.addr, otherAgg) }
	w.write(100)
	waitFor(t, "lines acknowledged by the other aggregator", func() bool { return otherAgg.records() == 100 && ag.Idle() })

	otherAgg.setHold(true) // stored, not acknowledged
	w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return otherAgg.records() == 150 })
	if err := ag.Reload([]Input{keep}); err != nil {
		t.Fatal(err)
	}
	other.SetRefuse(true) // the connection drops before the acks
	other.Cut()
	waitFor(t, "file of the removed input closed", func() bool { return strings.Contains(logs.String(), "input removed: file closed") })
	otherAgg.setHold(false)
	other.SetRefuse(false) // back to the same aggregator
	waitFor(t, "reconnected to the other aggregator", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == other.Addr()
	})
	home.SetRefuse(false) // home is back
	stayAway(t, ag, home, "the file of the removed input is resumed")
	if err := ag.Reload([]Input{app, keep}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back home", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == home.Addr()
	})
	waitFor(t, "everything stored", func() bool { return len(all()) >= 150 && ag.Idle() })
	checkOnce(t, all(), map[string]int{"a": 150})
}
