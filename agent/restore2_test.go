package agent

// Review probes of the restart's last pass (restore.go: resumeUnmatched).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"logship/internal/statefile"
)

// countByStream counts the shipped records of each stream.
func countByStream(fa *fakeAgg) map[string]int {
	got := map[string]int{}
	for _, s := range fa.snapshot() {
		for _, r := range s.records {
			if f := strings.Fields(r); len(f) >= 2 {
				got[f[0]]++
			}
		}
	}
	return got
}

// stripDraining rewrites the positions file as an agent before the change
// wrote it: no "draining" field.
func stripDraining(t *testing.T, stateDir string) {
	t.Helper()
	var es []map[string]any
	b, err := json.Marshal(readPositions(t, stateDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &es); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		delete(e, "draining")
	}
	b, err = json.Marshal(map[string]any{"agent": "host-1", "sources": es})
	if err != nil {
		t.Fatal(err)
	}
	if err := statefile.Write(filepath.Join(stateDir, positionsFile), positionsKind, positionsVersion, b); err != nil {
		t.Fatal(err)
	}
}

// Upgrade: the previous agent version followed a file rotated out of the
// globs (its entry names app.log.1) but wrote no "draining" field. The
// file was not drained when it stopped. The new agent must drain it, as
// the old one would have: its unread lines must not be dropped silently.
func TestOldPositionsFileRotatedAwayIsDrained(t *testing.T) {
	dir, fa, opts := appRig(t)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.write(100)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 100 })
	waitFor(t, "idle", a1.Idle)
	snap := fa.snapshot()
	fa.close() // the aggregator goes down: what follows is not acknowledged

	w.rotate(filepath.Join(dir, "app.log.1"), 30) // out of the glob, 30 lines unshipped
	waitFor(t, "the positions file follows the rename", func() bool {
		for _, e := range readPositions(t, opts.StateDir) {
			if e.Path == filepath.Join(dir, "app.log.1") {
				return true
			}
		}
		return false
	})
	a1.stop(t)
	stripDraining(t, opts.StateDir) // as written by the previous version
	w.stream, w.seq = "new", 0
	w.write(20)

	fa2 := newFakeAgg(t)
	fa2.seed(snap, 100)
	opts.Aggregators = []string{fa2.addr()}
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "new lines and idle", func() bool { return countByStream(fa2)["new"] == 20 && a2.Idle() })
	got := countByStream(fa2)
	if got["old"] != 130 {
		t.Errorf("old lines shipped: %d, want 130 (the 30 unread lines of the rotated app.log.1 dropped; GivenUpBytes %d)", got["old"], a2.Stats().GivenUpBytes)
		logLinesWith(t, tl, "app.log.1")
	}
}

// A lost entry (app.log, copytruncated while the agent was stopped) whose
// acknowledged position is at the end of the header its files begin with.
// An older rotation of the same log (app.log-1, shipped and closed long
// ago) sits in the directory, before the real copy (app.log-2) in name
// order. resumeCopy must not take the older rotation for the copy: that
// ships it again under the entry's id. Content alone cannot tell which of
// the two is the copy, so neither is read, and the loss of the copy's
// unread lines is logged: never a silent duplicate, never a silent loss.
func TestLostEntryCopyIsNotAnOlderRotation(t *testing.T) {
	dir, fa, opts := appRig(t)
	header := "HEADER " + strings.Repeat("h", 100)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "gen1")
	w.writeRaw(header + "\n")
	w.write(100)
	a1 := startAgent(t, opts)
	waitFor(t, "gen1", func() bool { return fa.records() == 101 && a1.Idle() })

	// A rotation while the agent runs (dateext: app.log-1 out of the glob);
	// the new file has its header only, shipped.
	w.rotate(filepath.Join(dir, "app.log-1"), 0)
	w.stream, w.seq = "gen2", 0
	w.writeRaw(header + "\n")
	waitFor(t, "rotated file closed, new header acknowledged", func() bool {
		es := readPositions(t, opts.StateDir)
		return len(es) == 1 && es[0].Path == w.path && es[0].Pos == int64(len(header)+1)
	})
	a1.stop(t)

	// While stopped: 30 lines, then copytruncate to app.log-2.
	w.write(30)
	copyFile(t, w.path, filepath.Join(dir, "app.log-2"))
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.stream, w.seq = "new", 0
	w.write(50)

	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "new lines and idle", func() bool { return countByStream(fa)["new"] == 50 && a2.Idle() })
	checkStreams(t, fa.snapshot(), map[string]int{"gen1": 100, "new": 50}, func(r string) bool { return r == header })
	if !strings.Contains(tl.String(), "several files hold its content") {
		t.Error("the copy's unread lines were not read, and that was not logged")
	}
	if t.Failed() {
		for _, l := range strings.Split(tl.String(), "\n") {
			if strings.Contains(l, "resuming") || strings.Contains(l, "copy") {
				t.Log(l)
			}
		}
	}
}

// copytruncate while stopped, the copy named out of the globs, and
// max_open_files leaves no room to drain the copy: its unread bytes must be
// given up loudly (counted), as for a rotated file (the rule of
// resumeUnmatched), not reported as "no copy found" and dropped uncounted.
func TestCopyBeyondMaxOpenFilesIsCounted(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.MaxOpenFiles = 1
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.write(200)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 200 && a1.Idle() })
	a1.stop(t)

	w.write(30) // never read
	copyFile(t, w.path, filepath.Join(dir, "app.log.1"))
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.stream, w.seq = "new", 0
	w.write(100)
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "new lines", func() bool { return countByStream(fa)["new"] == 100 && a2.Idle() })
	if got := countByStream(fa)["old"]; got != 230 && a2.Stats().GivenUpBytes == 0 {
		t.Errorf("the copy's 30 unread lines: %d of 230 old lines shipped, GivenUpBytes 0: lost without being counted", got)
		logLinesWith(t, tl, "WARN")
	}
}

// max_open_files full at the first scan: a file the globs DO match waits
// for room (noteWaiting). resumeUnmatched takes its entry for one of a file
// outside the globs: renamed, its unread bytes are counted given up; at its
// path, it is "no longer matched by the config". The entry is dropped, and
// when room comes the file is read as a new file from 0: first seen below
// 1024 bytes, it gets another id, and every line is stored twice.
func TestWaitingGlobbedFileKeepsItsEntry(t *testing.T) {
	for _, renamed := range []bool{true, false} {
		name := "at its path"
		if renamed {
			name = "renamed within the glob"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fa := newFakeAgg(t)
			opts := testOpts(t, dir, fa.addr())
			opts.MaxOpenFiles = 1
			opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log*")}}}
			oldPath := filepath.Join(dir, "b.log")
			w := newLogWriter(t, oldPath, "old")
			w.write(10) // first seen small: its id is of these bytes
			a1 := startAgent(t, opts)
			waitFor(t, "first lines", func() bool { return fa.records() == 10 && a1.Idle() })
			w.write(190)
			waitFor(t, "all lines", func() bool { return fa.records() == 200 && a1.Idle() })
			a1.stop(t)

			late := 0
			if renamed {
				late = 30
				w.rotate(filepath.Join(dir, "b.log.1"), late)
				w.f.Close()
				os.Remove(w.path) // no new b.log
			}
			// A file that comes first in glob order takes the only slot.
			n := newLogWriter(t, filepath.Join(dir, "a.log"), "new")
			n.write(100)
			log, tl := newTestLog(t)
			opts.Logger = log
			a2 := startAgent(t, opts)
			waitFor(t, "new lines", func() bool { return countByStream(fa)["new"] == 100 && a2.Idle() })
			givenUp := a2.Stats().GivenUpBytes

			// Room comes: a.log is deleted, drained and closed.
			n.f.Close()
			if err := os.Remove(n.path); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the waiting file opened and idle", func() bool {
				for _, st := range a2.Stats().Sources {
					if strings.Contains(st.Path, "b.log") {
						return a2.Idle()
					}
				}
				return false
			})
			checkStreams(t, fa.snapshot(), map[string]int{"old": 200 + late, "new": 100}, nil)
			if givenUp > 0 {
				t.Errorf("GivenUpBytes %d at the restart, for bytes that were shipped later", givenUp)
			}
			if t.Failed() {
				logLinesWith(t, tl, "b.log")
			}
		})
	}
}

// An entry whose acknowledged position is the end of the header (the file
// had just been created when the agent stopped). While stopped, the file
// gets lines, is rotated out of the glob (renamed: its own file is there,
// holding its content) and a new file begins with the same header. The
// new file must not take the entry as a "copy": the entry's own file is
// the one to resume (agent/doc.go, "The positions file"), or its lines are never
// shipped.
func TestNewFileWithSameHeaderDoesNotStealRenamedEntry(t *testing.T) {
	dir, fa, opts := appRig(t)
	header := "HEADER " + strings.Repeat("h", 100)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.writeRaw(header + "\n")
	a1 := startAgent(t, opts)
	waitFor(t, "header", func() bool { return fa.records() == 1 && a1.Idle() })
	waitFor(t, "position", func() bool {
		es := readPositions(t, opts.StateDir)
		return len(es) == 1 && es[0].Pos == int64(len(header)+1)
	})
	a1.stop(t)

	w.write(50)
	w.rotate(filepath.Join(dir, "app.log.1"), 0)
	w.stream, w.seq = "new", 0
	w.writeRaw(header + "\n")
	w.write(70)
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "new lines and idle", func() bool { return countByStream(fa)["new"] == 70 && a2.Idle() })
	checkStreams(t, fa.snapshot(), map[string]int{"old": 50, "new": 70}, func(r string) bool { return r == header })
	if t.Failed() {
		logLinesWith(t, tl, "resuming")
	}
}

// Held-up probe: a file rotated out of the globs with unread lines is
// marked draining; resumed at the restart; a second restart during the
// drain (its batches stored, not acknowledged) resumes it again; a reload
// with the same input does not stop the drain; it ends closed, its entry
// gone, every line once.
func TestRestartDuringDrainAndReload(t *testing.T) {
	dir, fa, opts := appRig(t)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.write(100)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 100 && a1.Idle() })
	snap := fa.snapshot()
	fa.close()
	rot := filepath.Join(dir, "app.log.1")
	w.rotate(rot, 30)
	draining := func() *posEntry {
		for _, e := range readPositions(t, opts.StateDir) {
			if e.Path == rot {
				return &e
			}
		}
		return nil
	}
	waitFor(t, "draining entry", func() bool { e := draining(); return e != nil && e.Draining != nil && *e.Draining })
	a1.stop(t)

	fa2 := newFakeAgg(t)
	fa2.seed(snap, 100)
	fa2.setHold(true)
	opts.Aggregators = []string{fa2.addr()}
	a2 := startAgent(t, opts)
	waitFor(t, "old lines stored, not acknowledged", func() bool { return countByStream(fa2)["old"] == 130 })
	snap2 := fa2.snapshot()
	fa2.close()
	a2.stop(t)
	if e := draining(); e == nil || e.Draining == nil || !*e.Draining {
		t.Fatalf("after the second run: entry %+v, want app.log.1 draining", e)
	}

	fa3 := newFakeAgg(t)
	fa3.seed(snap2, 100)
	opts.Aggregators = []string{fa3.addr()}
	a3 := startAgent(t, opts)
	waitFor(t, "loop up", a3.loopUp.Load)
	if err := a3.Reload(append(opts.Inputs, Input{Topic: "other", Paths: []string{filepath.Join(dir, "*.txt")}})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drained, closed, entry gone", func() bool {
		return a3.Idle() && len(a3.Stats().Sources) == 0 && draining() == nil
	})
	checkStreams(t, fa3.snapshot(), map[string]int{"old": 130}, nil)
}

// Held-up probe: the entry's directory is gone; a hard link of the
// rotated file under another name in its directory.
func TestDirGoneAndHardLink(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*", "*.log")}}}
	g := newLogWriter(t, filepath.Join(sub, "gone.log"), "gone")
	h := newLogWriter(t, filepath.Join(sub, "h.log"), "h")
	g.write(10)
	h.write(10)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 20 && a1.Idle() })
	a1.stop(t)
	// h.log: hard-linked as h.log.bak, then h.log removed (a rotation by
	// link and unlink); 5 lines more.
	h.write(5)
	if err := os.Link(h.path, filepath.Join(sub, "h.log.bak")); err != nil {
		t.Fatal(err)
	}
	os.Remove(h.path)
	g.write(3)
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "h drained", func() bool { return countByStream(fa)["h"] == 15 && a2.Idle() && len(a2.Stats().Sources) == 1 })
	// Now the directory goes while stopped.
	a2.stop(t)
	os.RemoveAll(sub)
	opts.Logger, _ = newTestLog(t)
	a3 := startAgent(t, opts)
	waitFor(t, "idle", a3.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"gone": 13, "h": 15}, nil)
	_ = tl
}

// Held-up probe: a draining file resumed at the restart keeps growing (a
// writer that has not reopened): drained until it stops.
func TestDrainingFileGrowsAfterRestart(t *testing.T) {
	dir, fa, opts := appRig(t)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.write(100)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 100 && a1.Idle() })
	snap := fa.snapshot()
	fa.close()
	rot := filepath.Join(dir, "app.log.1")
	if err := os.Rename(w.path, rot); err != nil {
		t.Fatal(err)
	}
	w.write(10) // through the old descriptor
	waitFor(t, "draining entry", func() bool {
		for _, e := range readPositions(t, opts.StateDir) {
			if e.Path == rot && e.Draining != nil && *e.Draining {
				return true
			}
		}
		return false
	})
	a1.stop(t)
	fa2 := newFakeAgg(t)
	fa2.seed(snap, 100)
	fa2.setHold(true) // no ack: the source cannot be closed before the writer goes on
	opts.Aggregators = []string{fa2.addr()}
	a2 := startAgent(t, opts)
	waitFor(t, "110", func() bool { return countByStream(fa2)["old"] == 110 })
	w.write(20) // the old writer goes on
	fa2.setHold(false)
	waitFor(t, "drained, closed", func() bool { return a2.Idle() && len(a2.Stats().Sources) == 0 })
	checkStreams(t, fa2.snapshot(), map[string]int{"old": 130}, nil)
}
