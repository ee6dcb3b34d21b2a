package agent

// Tests of source identity across restarts: which positions entry a file
// resumes, and when it is a new source (doc.go, "Sources and their
// identity").

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"logship/internal/statefile"
)

// What a restarted agent makes of a file changed while it was stopped
// (rotated, truncated, copied, replaced), when the old and the new
// content begin with the same 1500-byte header: the old content resumes
// where it was (its rotated file or its copy holds the bytes before the
// stored position), and the new content is a new source from 0, so nothing
// is lost or sent twice.
func TestRestartAfterChangesWhileStopped(t *testing.T) {
	header := "HEADER " + strings.Repeat("h", 1500)
	for _, tc := range []struct {
		name string
		glob string
		// change changes the file while the agent is stopped and returns
		// the lines the aggregator must hold in the end.
		change  func(t *testing.T, dir string, w *logWriter) map[string]int
		wantLog string // logged by the second agent
	}{
		{
			// The rotated file keeps its entry and is read on; the new
			// file at its path, longer than the old one was, is new.
			name: "rotated, rotated name in the glob", glob: "app.log*",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.rotate(filepath.Join(dir, "app.log.1"), 30)
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 230, "new": 400}
			},
		},
		{
			// The rotated file is not seen; the new file must not take its
			// entry by its first bytes alone (it would resume at the old
			// position and its first lines would never be shipped).
			name: "rotated out of the glob", glob: "*.log",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.rotate(filepath.Join(dir, "app.log.1"), 0)
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 200, "new": 400}
			},
		},
		{
			// The rotated file got lines the agent had not read before it
			// was renamed out of the glob: its entry names it, and it is
			// drained from there, as a running agent drains a rotated
			// file (DrainTimeout), before it is closed.
			name: "rotated out of the glob with unread lines", glob: "*.log",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.rotate(filepath.Join(dir, "app.log.1"), 30)
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 230, "new": 400}
			},
			wantLog: "level=INFO msg=\"resuming a file no glob matches",
		},
		{
			// The same, rotated on once more (a shift rotation) while the
			// agent was stopped: found in its directory by its (dev,
			// inode) and content.
			name: "rotated out of the glob twice with unread lines", glob: "*.log",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.rotate(filepath.Join(dir, "app.log.1"), 30)
				if err := os.Rename(filepath.Join(dir, "app.log.1"), filepath.Join(dir, "app.log.2")); err != nil {
					t.Fatal(err)
				}
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 230, "new": 400}
			},
			wantLog: "level=INFO msg=\"resuming a file no glob matches",
		},
		{
			// Same inode, same first bytes, but not the bytes before the
			// stored position.
			name: "truncated and grown again", glob: "*.log",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				if err := w.f.Truncate(0); err != nil {
					t.Fatal(err)
				}
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 200, "new": 400}
			},
			wantLog: "level=INFO msg=\"file truncated while the agent was stopped",
		},
		{
			// The copy holds the old content and resumes it; the truncated
			// file is new.
			name: "copytruncate", glob: "app.log*",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.write(30) // not shipped yet
				copyFile(t, w.path, filepath.Join(dir, "app.log.1"))
				if err := w.f.Truncate(0); err != nil {
					t.Fatal(err)
				}
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(100)
				return map[string]int{"old": 230, "new": 100}
			},
		},
		{
			// Deleted and created again under the same name.
			name: "replaced", glob: "*.log",
			change: func(t *testing.T, dir string, w *logWriter) map[string]int {
				w.f.Close()
				if err := os.Remove(w.path); err != nil {
					t.Fatal(err)
				}
				w.open()
				w.stream, w.seq = "new", 0
				w.writeRaw(header + "\n")
				w.write(400)
				return map[string]int{"old": 200, "new": 400}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fa := newFakeAgg(t)
			opts := testOpts(t, dir, fa.addr())
			opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, tc.glob)}}}
			w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
			w.writeRaw(header + "\n")
			w.write(200)
			a1 := startAgent(t, opts)
			waitFor(t, "first lines", func() bool { return fa.records() == 201 })
			a1.stop(t)

			want := tc.change(t, dir, w)
			log, tl := newTestLog(t)
			opts.Logger = log
			a2 := startAgent(t, opts)
			total := 1 // the new file's header
			for _, n := range want {
				total += n
			}
			total++ // the old file's header
			waitFor(t, "all lines", func() bool { return fa.records() == total && a2.Idle() })
			srcs := fa.snapshot()
			checkStreams(t, srcs, want, func(r string) bool { return r == header })
			if len(srcs) != 2 {
				t.Errorf("%d sources, want 2", len(srcs))
			}
			if c := fa.counts(); c.dups != 0 || c.resyncs != 0 {
				t.Errorf("counts %+v: something was sent twice", c)
			}
			if tc.wantLog != "" && !strings.Contains(tl.String(), tc.wantLog) {
				t.Errorf("log does not say %q", tc.wantLog)
			}
		})
	}
}

// A version 1 positions file (no tail fingerprints) is read: a file on its
// own (dev, inode) resumes as before, but no entry is resumed by
// fingerprint alone (a new file from 0 is safer than a silent skip). The
// next positions file is version 2.
func TestPositionsVersion1IsRead(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	header := "HEADER " + strings.Repeat("h", 1500)
	a := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	a.write(100)
	app := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	app.writeRaw(header + "\n")
	app.write(200)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 100+201 })
	a1.stop(t)

	// Rewrite the positions file as version 1.
	var v1 []map[string]any
	b, err := json.Marshal(readPositions(t, opts.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v1); err != nil {
		t.Fatal(err)
	}
	for _, e := range v1 {
		delete(e, "tail_fingerprint")
		delete(e, "tail_len")
	}
	b, err = json.Marshal(map[string]any{"agent": opts.ID, "sources": v1})
	if err != nil {
		t.Fatal(err)
	}
	posPath := filepath.Join(opts.StateDir, positionsFile)
	if err := statefile.Write(posPath, positionsKind, 1, b); err != nil {
		t.Fatal(err)
	}

	a.write(50)
	app.rotate(filepath.Join(dir, "app.log.1"), 0) // out of the glob
	app.stream, app.seq = "new", 0
	app.writeRaw(header + "\n")
	app.write(400)
	a2 := startAgent(t, opts)
	waitFor(t, "new lines", func() bool { return fa.records() > 100+201 && a2.Idle() })
	checkStreams(t, fa.snapshot(), map[string]int{"a": 150, "old": 200, "new": 400}, func(r string) bool { return r == header })
	if c := fa.counts(); c.dups != 0 || c.resyncs != 0 {
		t.Errorf("counts %+v: a.log must resume where it was", c)
	}
	a2.stop(t)
	if v, _, err := statefile.Read(posPath, positionsKind); err != nil || v != positionsVersion {
		t.Errorf("positions file after the restart: version %d, %v", v, err)
	}
}

// A file deleted (and closed by the agent), and a new file that gets its
// inode (ext4 and xfs reuse freed inodes at once) and is first seen with
// the same first bytes (its header line alone): the new file is a new
// source. With the old file's id, the aggregator would take the new file's
// first bytes for the old file's and drop them.
func TestInodeReuseWithSameHeaderIsANewSource(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	// No positions file is written while the test runs, so that it cannot
	// take the freed inode before the new log file does.
	opts.PositionsInterval = time.Hour
	logDir := filepath.Join(dir, "logs")
	os.MkdirAll(logDir, 0o755)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(logDir, "*.log")}}}
	path := filepath.Join(logDir, "app.log")
	const header = "ts,level,msg"
	ino := func() uint64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	ag := startAgent(t, opts)

	// The old file: its header alone at first sight, then lines.
	w := newLogWriter(t, path, "old")
	w.writeRaw(header + "\n")
	waitFor(t, "old file seen", func() bool { return ag.Stats().OpenFiles == 1 && ag.Idle() })
	w.write(5)
	waitFor(t, "old lines", func() bool { return fa.records() == 6 && ag.Idle() })
	oldIno := ino()
	w.f.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old file closed", func() bool { return ag.Stats().OpenFiles == 0 })

	// Create empty files (not tracked: no bytes) until one gets the freed
	// inode; park the others under a name no glob matches.
	reused := false
	for i := range 100 {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if ino() == oldIno {
			reused = true
			break
		}
		os.Rename(path, filepath.Join(dir, "parked-"+strconv.Itoa(i)))
	}
	if !reused {
		t.Skipf("inode %d not reused: the scenario needs a file system that reuses inodes (ext4, xfs)", oldIno)
	}
	w2 := newLogWriter(t, path, "new")
	w2.writeRaw(header + "\n")
	waitFor(t, "new file seen", func() bool { return ag.Stats().OpenFiles == 1 })
	w2.write(200)
	waitFor(t, "new file shipped", ag.Idle)
	srcs := fa.snapshot()
	checkStreams(t, srcs, map[string]int{"old": 5, "new": 200}, func(r string) bool { return r == header })
	if len(srcs) != 2 {
		t.Errorf("%d sources, want 2", len(srcs))
	}
}

// A file emptied while the agent was stopped keeps its positions entry
// (it is not taken for a file that is gone), and when it grows again with
// the same first bytes it is a new source from 0: with the old id (same
// inode, same birth time, same fingerprint) the aggregator would drop its
// bytes as duplicates.
func TestFileEmptiedWhileStoppedIsANewSource(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	header := "HEADER " + strings.Repeat("h", 1500)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "old")
	w.writeRaw(header + "\n")
	w.write(200)
	a1 := startAgent(t, opts)
	waitFor(t, "old lines", func() bool { return fa.records() == 201 })
	a1.stop(t)
	if es := readPositions(t, opts.StateDir); len(es) != 1 || es[0].FPLen != fingerprintMax {
		t.Fatalf("positions after the first run: %+v", es)
	}

	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	// The first scan rewrites the positions file: the entry of the empty
	// file stays, as a file with no identity yet.
	waitFor(t, "positions rewritten", func() bool {
		es := readPositions(t, opts.StateDir)
		return len(es) == 0 || es[0].FPLen == 0
	})
	if es := readPositions(t, opts.StateDir); len(es) != 1 {
		t.Fatalf("the entry of the emptied file was dropped: %+v", es)
	}
	w.stream, w.seq = "new", 0
	w.writeRaw(header + "\n")
	w.write(100)
	waitFor(t, "new lines", func() bool { return fa.records() == 201+101 })
	waitFor(t, "idle", a2.Idle)
	srcs := fa.snapshot()
	checkStreams(t, srcs, map[string]int{"old": 200, "new": 100}, func(r string) bool { return r == header })
	if len(srcs) != 2 {
		t.Errorf("%d sources, want 2", len(srcs))
	}
	if !strings.Contains(tl.String(), "truncated while the agent was stopped") {
		t.Error("truncation while stopped not logged")
	}
}

// A file resumed after a restart while the aggregator is down (so nothing
// is read), then truncated and written again past its stored position
// before the first read, is a new source from 0: the resumed source is
// checked at every scan from the start, against the positions entry's
// tail fingerprint (the bytes before the position) and its first bytes.
// Otherwise the new content would be read from the old position under the
// old id: its first lines lost, the line at the position cut. With the
// same 1100-byte header in both contents only the tail tells.
func TestTruncatedAfterRestartBeforeFirstReadIsANewSource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
	}{
		{"other first bytes", ""},
		{"same first 1 KiB", "HEADER " + strings.Repeat("h", 1100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "*.log")
			w := newLogWriter(t, r.path("app.log"), "before")
			headers := 0
			if tc.header != "" {
				w.writeRaw(tc.header + "\n")
				headers++
			}
			w.write(200)
			ag := startAgent(t, r.opts)
			r.waitStored(ag, 200+headers)
			ag.stop(t)

			addr := r.agg.addr
			r.agg.stop(t)
			ag2 := startAgent(t, r.opts) // the aggregator is down: nothing is read
			waitFor(t, "file resumed", func() bool { return ag2.Stats().OpenFiles == 1 })

			// Truncated and written again, past the old position, between
			// two looks.
			if err := w.f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			w.stream, w.seq = "after", 0
			if tc.header != "" {
				w.writeRaw(tc.header + "\n")
				headers++
			}
			w.write(400)
			it := ag2.loopIters.Load()
			waitFor(t, "a few scans", func() bool { return ag2.loopIters.Load() > it+10 })

			r.agg = startRealAgg(t, r.dataDir, addr)
			srcs := r.waitIdle(ag2)
			got := 0
			checkStreams(t, srcs, map[string]int{"before": 200, "after": 400}, func(s string) bool {
				got++
				return s == tc.header
			})
			if got != headers {
				t.Errorf("%d header records, want %d", got, headers)
			}
		})
	}
}
