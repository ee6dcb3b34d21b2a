package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// Lines written between logrotate's copy and its truncation were sent but
// are in neither file: the copy's source is acknowledged only up to the
// copy's end, which is then where the wait ends (sentHigh is capped at the
// file's size), not for as long as the copy lies there. (Found in review.)
func TestMoveHomeAfterCopyShorterThanSent(t *testing.T) {
	dir := t.TempDir()
	homeAgg := startRealAgg(t, filepath.Join(dir, "home"), "127.0.0.1:0")
	home := wiretest.NewProxy(t, homeAgg.addr)
	defer home.Close()
	other := newFakeAgg(t)
	opts := testOpts(t, dir)
	var logs *testLog
	opts.Logger, logs = newTestLog(t)
	opts.Aggregators = homeFirst(opts.ID, home.Addr(), other.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "a.log*")}}}
	home.SetRefuse(true) // home is down at start: the agent fails over
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	ag := startAgentWith(t, opts, func(a *Agent) {
		a.conn.healthyAfterHook = time.Millisecond
		a.conn.homeEveryHook = 20 * time.Millisecond
	})
	w.write(100)
	waitFor(t, "lines acknowledged by the other aggregator and saved", func() bool {
		if other.records() != 100 || !ag.Idle() {
			return false
		}
		fi, err := os.Stat(w.path)
		return err == nil && savedPos(t, opts.StateDir, w.path) == fi.Size()
	})
	// copytruncate: logrotate copies the file; the application writes 50
	// more lines, which the agent sends (stored, acks held); then the
	// file is truncated. Those 50 lines are in no file any more.
	tmp := filepath.Join(dir, "copy.tmp")
	copyFile(t, w.path, tmp)
	other.setHold(true)
	w.write(50)
	waitFor(t, "batches stored and in flight", func() bool { return other.records() == 150 })
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "truncation seen", func() bool { return strings.Contains(logs.String(), "file truncated") })
	other.setHold(false)
	if err := os.Rename(tmp, filepath.Join(dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "copy resumed and acknowledged", func() bool {
		return strings.Contains(logs.String(), "copy of a truncated file") && ag.Idle()
	})

	home.SetRefuse(false) // home is back, and looked at many times
	n := home.Accepted()
	waitFor(t, "back home, or many probes", func() bool {
		st := ag.ConnStats()
		return st.Connected && st.Aggregator == home.Addr() || home.Accepted() >= n+30
	})
	if st := ag.ConnStats(); st.Aggregator != home.Addr() {
		t.Fatalf("home took %d probes and the agent stays away (the copy's guard is past the copy's end): %+v", home.Accepted()-n, st)
	}
}
