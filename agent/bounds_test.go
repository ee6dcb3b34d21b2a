package agent

// Tests of the bounds and settings of issue 4: multiline rules, partial
// lines, long lines, drain_timeout, max_open_files, ignore_older, symbolic
// links, the state directory lock, per-source stats, and reload.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"logship/internal/statefile"
)

// A Java stack trace arrives as one record, with a start pattern and with
// a continuation pattern; the last record of the file is flushed by the
// multiline timeout.
func TestMultilineJavaStackTrace(t *testing.T) {
	trace := strings.Join([]string{
		"2024-05-01 12:00:01 ERROR request failed",
		"java.lang.IllegalStateException: boom",
		"\tat com.example.Foo.bar(Foo.java:42)",
		"\tat com.example.Main.main(Main.java:7)",
		"Caused by: java.io.IOException: disk",
		"\t... 2 more",
	}, "\n")
	for _, tc := range []struct {
		name string
		ml   Multiline
	}{
		{"start pattern", Multiline{Pattern: `^\d{4}-\d{2}-\d{2} `, Timeout: 50 * time.Millisecond}},
		{"continuation pattern", Multiline{Pattern: `^(\s|Caused by:|java\.)`, Match: "continuation", Timeout: 50 * time.Millisecond}},
		{"negated start", Multiline{Pattern: `^\d{4}-`, Negate: true, Match: "continuation", Timeout: 50 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fa := newFakeAgg(t)
			opts := testOpts(t, dir, fa.addr())
			ml := tc.ml
			opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}, Multiline: &ml}}
			w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
			w.writeRaw("2024-05-01 12:00:00 INFO start\n" + trace + "\n2024-05-01 12:00:02 INFO next\n" + trace + "\n")
			ag := startAgent(t, opts)
			waitFor(t, "4 records", func() bool { return fa.records() == 4 })
			waitFor(t, "idle", ag.Idle)
			var got []string
			for _, s := range fa.snapshot() {
				got = append(got, s.records...)
			}
			want := []string{"2024-05-01 12:00:00 INFO start", trace, "2024-05-01 12:00:02 INFO next", trace}
			if !slices.Equal(got, want) {
				t.Errorf("records:\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// A multiline record longer than max_lines is cut into several records,
// counted and logged with the limit that cut it; nothing is dropped.
func TestMultilineMaxLines(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	var tl *testLog
	opts.Logger, tl = newTestLog(t)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")},
		Multiline: &Multiline{Pattern: `^START`, MaxLines: 3, Timeout: 20 * time.Millisecond}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.writeRaw("START 1\nc1\nc2\nc3\nc4\nSTART 2\n")
	ag := startAgent(t, opts)
	waitFor(t, "records", func() bool { return fa.records() == 3 })
	waitFor(t, "idle", ag.Idle)
	var got []string
	for _, s := range fa.snapshot() {
		got = append(got, s.records...)
	}
	if want := []string{"START 1\nc1\nc2", "c3\nc4", "START 2"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if n := ag.Stats().RecordsSplit; n != 1 {
		t.Errorf("RecordsSplit %d, want 1", n)
	}
	checkCutLogged(t, tl, "limit=multiline.max_lines max=3 ")
}

// checkCutLogged checks that the agent logged one record cut, at WARN,
// with want (its limit and value).
func checkCutLogged(t *testing.T, tl *testLog, want string) {
	t.Helper()
	var lines []string
	for l := range strings.Lines(tl.String()) {
		if strings.Contains(l, "cut into several records") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], want) {
		t.Errorf("want one WARN of a cut with %q, got:\n%s", want, strings.Join(lines, ""))
	}
}

// A last line without its newline is held until it is complete; past
// partial_timeout it is shipped as it is, and what completes it later is
// a record of its own.
func TestPartialLineTimeout(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.PartialTimeout = 100 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(5)
	w.writeRaw("half")
	ag := startAgent(t, opts)
	waitFor(t, "complete lines", func() bool { return fa.records() >= 5 })
	w.writeRaw(" a line\n") // completed in time: one record
	waitFor(t, "completed line", func() bool { return fa.records() == 6 })
	w.writeRaw("no newline ever")
	waitFor(t, "partial line after the timeout", func() bool { return fa.records() == 7 })
	waitFor(t, "idle", ag.Idle)
	w.writeRaw(" but more\n")
	waitFor(t, "the rest", func() bool { return fa.records() == 8 })
	var got []string
	for _, s := range fa.snapshot() {
		got = append(got, s.records[5:]...)
	}
	if want := []string{"half a line", "no newline ever", " but more"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
}

// The incomplete last line of a rotated file is shipped after
// partial_timeout, and then the file is closed (it used to be dropped with
// a warning).
func TestRotatedFilePartialLineIsShipped(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.PartialTimeout = 50 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(10)
	w.writeRaw("last words")
	ag := startAgent(t, opts)
	waitFor(t, "lines", func() bool { return fa.records() >= 10 })
	w.rotate(filepath.Join(dir, "a.old"), 0)
	waitFor(t, "partial line shipped", func() bool { return fa.records() == 11 })
	waitFor(t, "rotated file closed", func() bool { return ag.Stats().OpenFiles == 1 })
	checkStreams(t, fa.snapshot(), map[string]int{"a": 10}, func(s string) bool { return s == "last words" })
}

// A line longer than max_line_bytes is cut into records of that size,
// counted in RecordsSplit; nothing is lost.
func TestMaxLineBytesSplitsAndCounts(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.MaxLineBytes = 1000
	var tl *testLog
	opts.Logger, tl = newTestLog(t)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(3)
	long := strings.Repeat("L", 2500)
	w.writeRaw(long + "\n")
	w.write(3)
	ag := startAgent(t, opts)
	waitFor(t, "records", func() bool { return fa.records() == 9 })
	waitFor(t, "idle", ag.Idle)
	var pieces []string
	checkStreams(t, fa.snapshot(), map[string]int{"a": 6}, func(r string) bool {
		pieces = append(pieces, r)
		return strings.Trim(r, "L") == ""
	})
	if strings.Join(pieces, "") != long || len(pieces) != 3 || len(pieces[0]) != 1000 {
		t.Errorf("long line arrived as %d pieces", len(pieces))
	}
	if n := ag.Stats().RecordsSplit; n != 2 {
		t.Errorf("RecordsSplit %d, want 2", n)
	}
	checkCutLogged(t, tl, "limit=max_line_bytes max=1000 ")
}

// A deleted file that cannot be drained within drain_timeout (the
// aggregator is down) is given up: closed, its bytes counted, and logged
// with its name.
func TestDrainTimeoutGivesUpAndCounts(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.DrainTimeout = 100 * time.Millisecond
	log, tl := newTestLog(t)
	opts.Logger = log
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(10)
	ag := startAgent(t, opts)
	waitFor(t, "lines", func() bool { return fa.records() == 10 && ag.Idle() })
	before, _ := os.Stat(w.path)
	fa.setHold(true) // nothing more is acknowledged
	w.write(100)
	after, _ := os.Stat(w.path)
	if err := os.Remove(w.path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "given up", func() bool { return ag.Stats().OpenFiles == 0 })
	if st, want := ag.Stats(), after.Size()-before.Size(); st.GivenUpBytes != want {
		t.Errorf("GivenUpBytes %d, want %d (everything not acknowledged)", st.GivenUpBytes, want)
	}
	if !strings.Contains(tl.String(), "giving up its unshipped bytes") || !strings.Contains(tl.String(), "a.log") {
		t.Error("giving up not logged with the file name")
	}
	fa.setHold(false)
}

// max_open_files: files beyond it wait, and are opened (and shipped) once
// others are closed.
func TestMaxOpenFiles(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.MaxOpenFiles = 2
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	want := map[string]int{}
	var ws []*logWriter
	for i := range 4 {
		name := fmt.Sprintf("f%d", i)
		w := newLogWriter(t, filepath.Join(dir, name+".log"), name)
		w.write(20)
		want[name] = 20
		ws = append(ws, w)
	}
	ag := startAgent(t, opts)
	waitFor(t, "two files shipped", func() bool { return fa.records() == 40 && ag.Idle() })
	if st := ag.Stats(); st.OpenFiles != 2 || st.FilesWaiting != 2 {
		t.Errorf("stats %+v: want 2 open, 2 waiting", st)
	}
	// Rotate away the open ones: once drained and closed, the others are
	// opened.
	for _, src := range ag.Stats().Sources {
		for _, w := range ws {
			if w.path == src.Path {
				w.rotate(w.path+".done", 0)
			}
		}
	}
	waitFor(t, "all shipped", func() bool { return fa.records() == 80 && ag.Idle() })
	if st := ag.Stats(); st.OpenFiles != 2 || st.FilesWaiting != 0 {
		t.Errorf("stats %+v: want 2 open, none waiting", st)
	}
	if c := fa.counts(); c.dups != 0 {
		t.Errorf("counts %+v: a closed file was read again", c)
	}
	checkStreams(t, fa.snapshot(), want, nil)
}

// ignore_older: a file seen for the first time whose last change is older
// is skipped, until it is written again.
func TestIgnoreOlder(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}, IgnoreOlder: time.Hour}}
	old := newLogWriter(t, filepath.Join(dir, "old.log"), "old")
	old.write(10)
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old.path, past, past); err != nil {
		t.Fatal(err)
	}
	fresh := newLogWriter(t, filepath.Join(dir, "fresh.log"), "fresh")
	fresh.write(10)
	ag := startAgent(t, opts)
	waitFor(t, "fresh file", func() bool { return fa.records() == 10 && ag.Idle() })
	if st := ag.Stats(); st.OpenFiles != 1 {
		t.Errorf("%d files open, want 1", st.OpenFiles)
	}
	old.write(5) // written again: no longer old
	waitFor(t, "old file", func() bool { return fa.records() == 25 })
	checkStreams(t, fa.snapshot(), map[string]int{"old": 15, "fresh": 10}, nil)
}

// A symbolic link matched by a glob is followed to its target; a target
// matched both directly and through a link is one source.
func TestSymlinkIsFollowed(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	os.MkdirAll(filepath.Join(dir, "real"), 0o755)
	os.MkdirAll(filepath.Join(dir, "links"), 0o755)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "links", "*.log"), filepath.Join(dir, "real", "b.log")}}}
	a := newLogWriter(t, filepath.Join(dir, "real", "a.txt"), "a")
	b := newLogWriter(t, filepath.Join(dir, "real", "b.log"), "b")
	a.write(10)
	b.write(10)
	for _, l := range [][2]string{{"real/a.txt", "links/a.log"}, {"real/b.log", "links/b.log"}} {
		if err := os.Symlink(filepath.Join(dir, l[0]), filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	ag := startAgent(t, opts)
	waitFor(t, "lines", func() bool { return fa.records() == 20 && ag.Idle() })
	a.write(5)
	waitFor(t, "more lines", func() bool { return fa.records() == 25 && ag.Idle() })
	srcs := fa.snapshot()
	checkStreams(t, srcs, map[string]int{"a": 15, "b": 10}, nil)
	if len(srcs) != 2 {
		t.Errorf("%d sources, want 2", len(srcs))
	}
}

// Two agents cannot share a state directory.
func TestStateDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	a1, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "in use by another agent") {
		t.Errorf("second agent on the same state dir: %v", err)
	}
	a1.Close()
	a2, err := New(opts)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	a2.Close()
}

// Stats has one entry per open file: bytes read, acknowledged position,
// size and lag.
func TestPerSourceStats(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(100)
	ag := startAgent(t, opts)
	fi, _ := os.Stat(w.path)
	waitFor(t, "acked", func() bool {
		ss := ag.Stats().Sources
		return len(ss) == 1 && ss[0].AckedPos == fi.Size() && ss[0].Size == fi.Size()
	})
	s := ag.Stats().Sources[0]
	if s.Topic != "app" || s.Path != w.path || s.ReadBytes != fi.Size() || s.Lag != 0 {
		t.Errorf("source stats %+v", s)
	}
	fa.setHold(true)
	w.write(100)
	fi2, _ := os.Stat(w.path)
	waitFor(t, "lag", func() bool {
		ss := ag.Stats().Sources
		return len(ss) == 1 && ss[0].Size == fi2.Size() && ss[0].Lag == fi2.Size()-fi.Size()
	})
	fa.setHold(false)
}

// The salt a truncation gives the new source is in the positions file
// before any of the new content is shipped, so a crash right after the
// truncation cannot give the new content another id (and duplicates).
func TestTruncationSaltIsSavedBeforeShipping(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.PositionsInterval = time.Hour // only the save that a new identity forces
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "before")
	w.write(100)
	ag := startAgent(t, opts)
	waitFor(t, "lines", func() bool { return fa.records() == 100 && ag.Idle() })
	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.stream, w.seq = "after", 0
	w.write(50)
	waitFor(t, "new lines", func() bool { return fa.records() == 150 })
	es := readPositions(t, opts.StateDir)
	var salted bool
	for _, e := range es {
		salted = salted || (e.Salt != 0 && e.Inode != 0)
	}
	if !salted {
		t.Fatalf("positions %+v: the new source's salt is not saved", es)
	}
	// A crash now: the positions on disk are those of the forced save.
	posPath := filepath.Join(opts.StateDir, positionsFile)
	saved, err := os.ReadFile(posPath)
	if err != nil {
		t.Fatal(err)
	}
	ag.stop(t)
	if err := statefile.WriteAtomic(posPath, saved); err != nil {
		t.Fatal(err)
	}
	ag2 := startAgent(t, opts)
	w.write(10)
	waitFor(t, "after restart", func() bool { return fa.records() == 160 && ag2.Idle() })
	checkStreams(t, fa.snapshot(), map[string]int{"before": 100, "after": 60}, nil)
}

// Reload adds and removes inputs under load: the kept input's lines arrive
// exactly once; the added input's files are read from their beginning; the
// removed input's files stop, and what they shipped is a contiguous prefix
// with nothing repeated. A bad set of inputs is refused and the old ones
// keep running.
func TestReloadAddsAndRemovesInputsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	for _, d := range []string{"keep", "gone", "new"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	keepIn := Input{Topic: "keep", Paths: []string{filepath.Join(dir, "keep", "*.log")}}
	goneIn := Input{Topic: "gone", Paths: []string{filepath.Join(dir, "gone", "*.log")}}
	newIn := Input{Topic: "new", Paths: []string{filepath.Join(dir, "new", "*.log")}}
	opts.Inputs = []Input{keepIn, goneIn}
	keep := newLogWriter(t, filepath.Join(dir, "keep", "k.log"), "k")
	gone := newLogWriter(t, filepath.Join(dir, "gone", "g.log"), "g")
	nw := newLogWriter(t, filepath.Join(dir, "new", "n.log"), "n")
	ag := startAgent(t, opts)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			keep.write(20)
			gone.write(20)
			nw.write(20)
			time.Sleep(time.Millisecond) // pacing only
		}
	}()
	waitFor(t, "some lines", func() bool { return fa.records() >= 2000 })
	if err := ag.Reload([]Input{keepIn, {Topic: "bad/topic", Paths: []string{"[x"}}}); err == nil {
		t.Error("bad inputs accepted")
	}
	if err := ag.Reload([]Input{keepIn, newIn}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "more lines", func() bool { return fa.records() >= 6000 })
	close(stop)
	<-done
	waitFor(t, "idle", func() bool { return ag.Idle() && ag.Stats().OpenFiles == 2 })
	srcs := fa.snapshot()
	var gotG int
	for _, s := range srcs {
		if s.topic == "gone" {
			gotG = len(s.records)
		}
	}
	checkStreams(t, srcs, map[string]int{"k": keep.seq, "n": nw.seq, "g": gotG}, nil)
	if gotG == 0 || gotG >= gone.seq {
		t.Errorf("removed input shipped %d of %d lines: want a prefix", gotG, gone.seq)
	}
	for _, e := range readPositions(t, opts.StateDir) {
		if e.Topic == "gone" {
			t.Errorf("positions entry of a removed input's file: %+v", e)
		}
	}
}

// An input removed by a reload and then added back: its file resumes its
// source where it was, under its id, and the lines written while the
// input was removed are shipped; nothing is stored twice. The file was
// first seen short (by the running agent, at its creation), so read again
// from 0 it would get another id (K = 1024 instead of its size then), and
// every line would be stored a second time.
func TestReloadRemoveAndReAddResumesTheSource(t *testing.T) {
	r := newRig(t, "*.log")
	in := r.opts.Inputs[0]
	ag := startAgent(t, r.opts)
	waitFor(t, "first scan", func() bool { return ag.loopIters.Load() > 1 })
	w := newLogWriter(t, r.path("app.log"), "app")
	w.write(3) // a new file: first seen short
	r.waitStored(ag, 3)
	w.write(100)
	r.waitStored(ag, 103)

	other := filepath.Join(r.dir, "other")
	os.MkdirAll(other, 0o755)
	if err := ag.Reload([]Input{{Topic: "other", Paths: []string{filepath.Join(other, "*.log")}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removed input's file closed", func() bool { return ag.Stats().OpenFiles == 0 })
	w.write(10) // written while the input is removed: shipped when it is back
	if err := ag.Reload([]Input{in}); err != nil {
		t.Fatal(err)
	}
	srcs := r.waitStored(ag, w.seq)
	checkStreams(t, srcs, map[string]int{"app": w.seq}, nil)
	if len(srcs) != 1 {
		t.Errorf("%d sources for one file, want 1 (the re-added file got a new id)", len(srcs))
	}
}

// A file held as a possible copy (its bytes are a live source's) when a
// reload removes its input is not started later under the removed input:
// held files are let go at a reload and found again, or not, by the scan
// under the new inputs.
func TestReloadLetsGoOfHeldCopiesOfRemovedInputs(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(t, dir, "127.0.0.1:1")
	logs := filepath.Join(dir, "logs")
	other := filepath.Join(dir, "other")
	os.MkdirAll(logs, 0o755)
	os.MkdirAll(other, 0o755)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(logs, "*.log")}}}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer func() {
		for _, s := range a.order {
			a.closeSource(s)
		}
		a.closeHeld()
	}()
	w := newLogWriter(t, filepath.Join(logs, "a.log"), "a")
	w.write(50)
	a.scan(time.Now())
	copyFile(t, w.path, filepath.Join(logs, "b.log"))
	a.scan(time.Now())
	if len(a.held) != 1 {
		t.Fatalf("%d files held, want b.log", len(a.held))
	}
	if err := a.reload([]Input{{Topic: "other", Paths: []string{filepath.Join(other, "*.log")}}}); err != nil {
		t.Fatal(err)
	}
	a.scan(time.Now().Add(time.Hour)) // long after any copy wait
	for _, s := range a.order {
		if filepath.Base(s.path) == "b.log" {
			t.Errorf("b.log started under topic %q after its input was removed", s.topic)
		}
	}
	if len(a.held) != 0 {
		t.Errorf("%d files still held", len(a.held))
	}
}

// A multiline record held at the end of the file waits for the rule's
// Timeout even when it is longer than partial_timeout (which is for an
// incomplete last line only): it is not forced out at partial_timeout.
func TestMultilineTimeoutLongerThanPartialTimeout(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.PartialTimeout = 20 * time.Millisecond
	const timeout = 400 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")},
		Multiline: &Multiline{Pattern: `^\s`, Match: "continuation", Timeout: timeout}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	start := time.Now()
	w.writeRaw("first\n\tat one\n")
	ag := startAgent(t, opts)
	waitFor(t, "the record held", func() bool { return ag.Stats().OpenFiles == 1 })
	waitFor(t, "the record shipped", func() bool { return fa.records() == 1 })
	// The agent may be slow to ship it, never quick: this cannot fail by
	// chance.
	if d := time.Since(start); d < timeout {
		t.Errorf("multiline record shipped after %v, before its timeout %v", d, timeout)
	}
	waitFor(t, "idle", ag.Idle)
	var got []string
	for _, s := range fa.snapshot() {
		got = append(got, s.records...)
	}
	if want := []string{"first\n\tat one"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
}

// A partial last line is shipped at partial_timeout even when the
// connection drops more often than that: each lost session makes the
// file be read again from its acknowledged position, and the same held
// bytes found again keep their timer. Here every batch of another file
// (written every few ms) drops the connection before its ack.
func TestPartialLineTimeoutSurvivesReconnects(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.PartialTimeout = 300 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	p := newLogWriter(t, filepath.Join(dir, "partial.log"), "p")
	p.writeRaw("no newline yet")
	b := newLogWriter(t, filepath.Join(dir, "busy.log"), "b")
	b.write(1)
	fa.setDropEvery(1)
	ag := startAgent(t, opts)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // lines that keep the connection dropping
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				b.write(1)
			}
		}
	}()
	waitFor(t, "the partial line", func() bool {
		for _, s := range fa.snapshot() {
			if slices.Contains(s.records, "no newline yet") {
				return true
			}
		}
		return false
	})
	close(stop)
	<-done
	if c := fa.counts(); c.conns < 3 {
		t.Errorf("%d connections: the test did not drop them", c.conns)
	}
	fa.setDropEvery(0)
	waitFor(t, "idle", ag.Idle)
}
