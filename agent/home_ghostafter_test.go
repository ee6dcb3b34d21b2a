package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// A file copytruncated just after the agent moved home, before the next
// positions write: its ghost must resume at the acknowledged position,
// not at an older one whose lines only the aggregator left behind holds.
// The move writes the positions file (tails at the acknowledged
// positions) first. (Found in review.)
func TestCopyTruncateJustAfterMoveHome(t *testing.T) {
	dir := t.TempDir()
	homeAgg := startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0")
	proxy := wiretest.NewProxy(t, homeAgg.addr)
	defer proxy.Close()
	other := newFakeAgg(t)
	opts := testOpts(t, dir)
	opts.PositionsInterval = time.Hour
	var logs *testLog
	opts.Logger, logs = newTestLog(t)
	opts.Aggregators = homeFirst(opts.ID, proxy.Addr(), other.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "a.log*")}}}
	proxy.SetRefuse(true) // home is down at start: the agent fails over
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	all := func() []string { return storedOn(t, homeAgg.addr, other) }
	w.write(100)
	waitFor(t, "lines acknowledged by the other aggregator", func() bool { return other.records() == 100 && ag.Idle() })

	proxy.SetRefuse(false) // home is back: nothing in flight, the move is safe
	waitFor(t, "back home", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == proxy.Addr()
	})
	// copytruncate right after the move; the copy is moved in later.
	tmp := filepath.Join(dir, "copy.tmp")
	copyFile(t, w.path, tmp)
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "truncation seen", func() bool { return strings.Contains(logs.String(), "file truncated") })
	if err := os.Rename(tmp, filepath.Join(dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
	w.stream, w.seq = "b", 0
	w.write(20)
	waitFor(t, "everything stored", func() bool {
		return len(all()) >= 120 && strings.Contains(logs.String(), "copy of a truncated file") && ag.Idle()
	})
	checkOnce(t, all(), map[string]int{"a": 100, "b": 20})
}
