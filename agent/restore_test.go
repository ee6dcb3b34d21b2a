package agent

// The restart's last pass: resumeUnmatched (restore.go).

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A file the configuration no longer covers (excluded since the restart)
// is read no further, as a reload treats the files of a removed input: the
// lines written to it after the agent restarted must not be shipped. Its
// entry was not draining when the agent stopped, and its file is still at
// its path: a change of the config, not a rotation.
func TestExcludedFileIsNotShippedAfterRestart(t *testing.T) {
	dir, fa, opts := appRig(t)
	app := newLogWriter(t, filepath.Join(dir, "app.log"), "app")
	dbg := newLogWriter(t, filepath.Join(dir, "debug.log"), "debug")
	app.write(100)
	dbg.write(100)
	runUntilStored(t, opts, fa, 200)

	// The operator excludes debug.log and restarts the agent.
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}, Exclude: []string{"debug.log"}}}
	a2 := startAgent(t, opts)
	waitFor(t, "second agent up", a2.Idle)
	dbg.write(100) // written after the restart, to an excluded file
	app.write(100)
	waitFor(t, "app lines", func() bool {
		return func() bool {
			n := 0
			for _, s := range fa.snapshot() {
				if strings.HasSuffix(s.path, "app.log") {
					n += len(s.records)
				}
			}
			return n == 200
		}() && a2.Idle()
	})
	for _, s := range fa.snapshot() {
		if strings.HasSuffix(s.path, "debug.log") && len(s.records) != 100 {
			t.Errorf("debug.log, excluded before the restart: %d lines shipped, want the 100 shipped before", len(s.records))
		}
	}
	for _, st := range a2.Stats().Sources {
		if strings.HasSuffix(st.Path, "debug.log") {
			t.Errorf("excluded file is an open source after the restart: %+v", st)
		}
	}
}

// At a restart, an unclaimed entry is resumed only from its own file,
// found by (dev, inode): a file now at the entry's path that begins like
// it (a shared header, the entry's position at its end) must not take it
// while the entry's own file, rotated on, sits next to it.
func TestUnmatchedEntryResumesItsOwnInode(t *testing.T) {
	dir, fa, opts := appRig(t)
	header := "HEADER " + strings.Repeat("h", 100)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.writeRaw(header + "\n") // a new file: its header only, so far
	a1 := startAgent(t, opts)
	waitFor(t, "header", func() bool { return fa.records() == 1 })
	waitFor(t, "position", func() bool {
		es := readPositions(t, opts.StateDir)
		return len(es) == 1 && es[0].Pos == int64(len(header)+1)
	})
	snap := fa.snapshot()
	fa.close() // the aggregator goes down

	// Lines the agent cannot ship, then a rotation out of the globs.
	w.write(50)
	w.rotate(filepath.Join(dir, "app.log.1"), 0)
	waitFor(t, "the positions file follows the rename", func() bool {
		es := readPositions(t, opts.StateDir)
		for _, e := range es {
			if e.Path == filepath.Join(dir, "app.log.1") {
				return true
			}
		}
		return false
	})
	a1.stop(t)

	// While the agent is stopped: one more rotation (app.log.1 to
	// app.log.2), the file that was app.log meanwhile is app.log.1, and
	// app.log is created empty.
	if err := os.Rename(filepath.Join(dir, "app.log.1"), filepath.Join(dir, "app.log.2")); err != nil {
		t.Fatal(err)
	}
	z := newLogWriter(t, filepath.Join(dir, "app.log.1"), "z")
	z.writeRaw(header + "\n")
	z.write(70)
	w.f.Close()
	if err := os.Truncate(w.path, 0); err != nil {
		t.Fatal(err)
	}

	fa2 := newFakeAgg(t)
	fa2.seed(snap, 100)
	opts.Aggregators = []string{fa2.addr()}
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "shipped and idle", func() bool { return fa2.records() > 1 && a2.Idle() })
	got := map[string]int{}
	for _, s := range fa2.snapshot() {
		for _, r := range s.records {
			if f := strings.Fields(r); len(f) == 2 || len(f) == 3 {
				got[f[0]]++
			}
		}
	}
	if got["old"] != 50 || got["z"] != 0 {
		t.Errorf("lines shipped after the restart: %d of app.log.2 (the entry's own file, want 50), %d of app.log.1 (another file at the entry's path, want 0)", got["old"], got["z"])
		logLinesWith(t, tl, "resuming")
	}
}

// A file at an entry's path that is no longer a regular file: a named pipe
// (the application now logs to a FIFO at the same name). open(2) of a FIFO
// blocks until a writer comes: the restart's last pass must look at what
// the file is before it opens it, or the agent's loop hangs in its first
// scan.
func TestEntryPathNowAFIFODoesNotHang(t *testing.T) {
	dir, fa, opts := appRig(t)
	a := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	b := newLogWriter(t, filepath.Join(dir, "b.log"), "b")
	a.write(10)
	b.write(10)
	runUntilStored(t, opts, fa, 20)

	b.f.Close()
	if err := os.Remove(b.path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(b.path, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	// Whatever happens, let a blocked open return so the test can end.
	t.Cleanup(func() {
		if f, err := os.OpenFile(b.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	a.write(10)
	a2 := startAgent(t, opts)
	deadline := time.Now().Add(10 * time.Second)
	for fa.records() != 30 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			stack := string(buf[:runtime.Stack(buf, true)])
			where := "elsewhere"
			if i := strings.Index(stack, "agent.(*Agent).openUnmatched"); i >= 0 {
				where = "in " + strings.SplitN(stack[i:], "\n", 3)[1]
			}
			// Unblock the agent so that it can stop, then fail.
			if f, err := os.OpenFile(b.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("a.log's new lines not shipped in 10s: the agent's loop is stuck (%d records); blocked %s", fa.records(), strings.TrimSpace(where))
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "idle", a2.Idle)
}

// With max_open_files reached by the globbed files at the first scan, a
// file rotated out of the globs with unread lines cannot be drained: its
// unread bytes must be given up loudly (logged, counted in GivenUpBytes),
// never silently.
func TestUnmatchedEntryBeyondMaxOpenFilesIsNotSilentlyLost(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.MaxOpenFiles = 1
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.write(200)
	runUntilStored(t, opts, fa, 200)

	w.rotate(filepath.Join(dir, "app.log.1"), 30) // 30 lines the agent never read
	w.stream, w.seq = "new", 0
	w.write(100)
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "new lines", func() bool { return fa.records() >= 300 && a2.Idle() })
	got := 0
	for _, s := range fa.snapshot() {
		for _, r := range s.records {
			if strings.HasPrefix(r, "old ") {
				got++
			}
		}
	}
	if got != 230 && a2.Stats().GivenUpBytes == 0 {
		t.Errorf("app.log.1's 30 unread lines: %d of 230 old lines shipped, GivenUpBytes %d: lost without being counted",
			got, a2.Stats().GivenUpBytes)
		logLinesWith(t, tl, "WARN")
	}
}

// copytruncate while the agent is stopped, the copy named out of the
// globs, with lines the agent had not read: the copy is found in the
// file's directory by its content and drained, so every old line is
// shipped once. Without a copy (the file was only truncated), the lines
// the agent had not read are gone, and that is logged.
func TestCopytruncateOutOfGlobsWhileStopped(t *testing.T) {
	for _, withCopy := range []bool{true, false} {
		t.Run(fmt.Sprintf("copy=%v", withCopy), func(t *testing.T) {
			dir, fa, opts := appRig(t)
			w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
			w.write(200)
			runUntilStored(t, opts, fa, 200)

			w.write(30) // not read by the agent
			if withCopy {
				copyFile(t, w.path, filepath.Join(dir, "app.log.1"))
			}
			if err := w.f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			w.stream, w.seq = "new", 0
			w.write(100)
			log, tl := newTestLog(t)
			opts.Logger = log
			a2 := startAgent(t, opts)
			want := map[string]int{"old": 200, "new": 100}
			if withCopy {
				want["old"] = 230
			}
			waitFor(t, "all lines", func() bool { return fa.records() == want["old"]+want["new"] && a2.Idle() })
			checkStreams(t, fa.snapshot(), want, nil)
			if c := fa.counts(); c.dups != 0 {
				t.Errorf("counts %+v: something was sent twice", c)
			}
			warned := strings.Contains(tl.String(), "no copy of it found")
			if warned == withCopy {
				t.Errorf("warned that no copy was found: %v, with a copy: %v", warned, withCopy)
			}
		})
	}
}

// appRig is the setup of the restart tests: a directory, a fake
// aggregator, and options with one input of topic app over dir/*.log.
func appRig(t *testing.T) (dir string, fa *fakeAgg, opts Options) {
	t.Helper()
	dir = t.TempDir()
	fa = newFakeAgg(t)
	opts = testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	return dir, fa, opts
}

// runUntilStored runs an agent with opts until fa holds n records and the
// agent is idle, then stops it: the first run of a restart test.
func runUntilStored(t *testing.T, opts Options, fa *fakeAgg, n int) {
	t.Helper()
	a := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == n })
	waitFor(t, "idle", a.Idle)
	a.stop(t)
}

// logLinesWith logs the lines of the agent's log that contain sub, to
// show what the agent said of a failure.
func logLinesWith(t *testing.T, log fmt.Stringer, sub string) {
	t.Helper()
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, sub) {
			t.Log(l)
		}
	}
}
