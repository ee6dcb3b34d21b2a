package agent

import (
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/statefile"
	"logship/internal/wire"
	"logship/logstore/batch"
)

func TestShipsFilesOfTwoTopics(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.MkdirAll(filepath.Join(dir, "web"), 0o755)
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{
		{Topic: "app", Paths: []string{filepath.Join(dir, "app", "*.log")}},
		{Topic: "web", Paths: []string{filepath.Join(dir, "web", "*.txt")}, Exclude: []string{"skip-*"}},
	}
	a1 := newLogWriter(t, filepath.Join(dir, "app", "a.log"), "a")
	b1 := newLogWriter(t, filepath.Join(dir, "app", "b.log"), "b")
	w1 := newLogWriter(t, filepath.Join(dir, "web", "x.txt"), "w")
	skip := newLogWriter(t, filepath.Join(dir, "web", "skip-me.txt"), "skip")
	a1.write(300)
	b1.write(200)
	w1.write(250)
	skip.write(10)

	ag := startAgent(t, opts)
	waitFor(t, "first 750 lines", func() bool { return fa.records() == 750 })

	// A file created while running is picked up; old ones keep growing.
	c1 := newLogWriter(t, filepath.Join(dir, "app", "c.log"), "c")
	c1.write(100)
	a1.write(100)
	w1.writeRaw(lineFor("w", 251) + "\n" + lineFor("w", 252)[:5]) // incomplete last line
	waitFor(t, "all lines", func() bool { return fa.records() == 951 })
	waitFor(t, "idle", ag.Idle)
	w1.writeRaw(lineFor("w", 252)[5:] + "\n")
	w1.seq = 252
	waitFor(t, "completed line", func() bool { return fa.records() == 952 })
	waitFor(t, "idle", ag.Idle)

	srcs := fa.snapshot()
	checkStreams(t, srcs, map[string]int{"a": 400, "b": 200, "c": 100, "w": 252}, nil)
	topics := map[string]string{}
	for _, s := range srcs {
		topics[filepath.Base(s.path)] = s.topic
	}
	wantTopics := map[string]string{"a.log": "app", "b.log": "app", "c.log": "app", "x.txt": "web"}
	for p, tp := range wantTopics {
		if topics[p] != tp {
			t.Errorf("%s: topic %q, want %q", p, topics[p], tp)
		}
	}
	if len(srcs) != 4 {
		t.Errorf("%d sources, want 4", len(srcs))
	}
	c := fa.counts()
	if c.conns != 1 || c.dups != 0 || c.resyncs != 0 {
		t.Errorf("counts %+v: want one connection, no duplicates, no resyncs", c)
	}
	st := ag.Stats()
	if st.Lines != 952 || st.RawBytes != st.AckedBytes || st.Batches != st.AckedBatches || st.WireBytes == 0 || st.OpenFiles != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestFilesWithTheSameHeaderAreDistinctSources(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	header := "HEADER " + strings.Repeat("h", 1500) + "\n"
	for _, name := range []string{"a", "b"} {
		w := newLogWriter(t, filepath.Join(dir, name+".log"), name)
		w.writeRaw(header)
		w.write(100)
	}
	ag := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 202 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 100, "b": 100}, func(r string) bool { return r == header[:len(header)-1] })
}

func TestRenameRotation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		glob    string
		rotated func(dir string, i int) string
		shift   bool // rotated files are shifted .1 -> .2 like logrotate
	}{
		{"rotated name matches glob", "app.log*", func(dir string, i int) string { return filepath.Join(dir, "app.log.1") }, true},
		{"rotated name does not match glob", "*.log", func(dir string, i int) string { return filepath.Join(dir, "app.log."+string(rune('a'+i))) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fa := newFakeAgg(t)
			opts := testOpts(t, dir, fa.addr())
			opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, tc.glob)}}}
			w := newLogWriter(t, filepath.Join(dir, "app.log"), "app")
			ag := startAgent(t, opts)
			const rounds, perRound = 6, 400
			for i := range rounds {
				for range perRound / 50 {
					w.write(50)
				}
				// Rotate while the agent is behind.
				waitFor(t, "some lines", func() bool { return fa.records() >= w.seq-perRound/2 })
				if tc.shift {
					for j := 3; j >= 1; j-- {
						old := filepath.Join(dir, "app.log."+string(rune('0'+j)))
						if _, err := os.Stat(old); err == nil {
							os.Rename(old, filepath.Join(dir, "app.log."+string(rune('0'+j+1))))
						}
					}
				}
				w.rotate(tc.rotated(dir, i), 7)
			}
			w.write(100)
			total := w.seq
			waitFor(t, "all lines", func() bool { return fa.records() >= total })
			waitFor(t, "idle", ag.Idle)
			checkStreams(t, fa.snapshot(), map[string]int{"app": total}, nil)
			if c := fa.counts(); c.dups != 0 || c.resyncs != 0 {
				t.Errorf("counts %+v: want no duplicates or resyncs", c)
			}
			if !tc.shift {
				waitFor(t, "rotated files closed", func() bool { return ag.Stats().OpenFiles == 1 })
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	log, tl := newTestLog(t)
	opts.Logger = log
	// The same first 1500 bytes before and after: the new content must
	// still get a new source id, or the aggregator would drop it.
	header := "HEADER " + strings.Repeat("h", 1500)
	w := newLogWriter(t, filepath.Join(dir, "app.log"), "before")
	w.writeRaw(header + "\n")
	w.write(300)
	ag := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 301 })
	waitFor(t, "idle", ag.Idle)

	if err := w.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.stream, w.seq = "after", 0
	w.writeRaw(header + "\n")
	w.write(50) // fewer bytes than before
	waitFor(t, "lines after truncation", func() bool { return fa.records() == 352 })
	waitFor(t, "idle", ag.Idle)
	srcs := fa.snapshot()
	checkStreams(t, srcs, map[string]int{"before": 300, "after": 50}, func(r string) bool { return r == header })
	if len(srcs) != 2 {
		t.Errorf("%d sources, want 2", len(srcs))
	}
	if !strings.Contains(tl.String(), "file truncated") {
		t.Error("truncation not logged")
	}
}

func TestRestartResumesAtAckedPositions(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	ws := []*logWriter{
		newLogWriter(t, filepath.Join(dir, "a.log"), "a"),
		newLogWriter(t, filepath.Join(dir, "b.log"), "b"),
	}
	const total = 3000
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; i < total; i += 20 {
			for _, w := range ws {
				w.write(20)
			}
			time.Sleep(200 * time.Microsecond) // pacing only
		}
	}()
	a1 := startAgent(t, opts)
	waitFor(t, "some lines", func() bool { return fa.records() >= total/3 })
	a1.stop(t)
	a2 := startAgent(t, opts)
	<-writing
	waitFor(t, "all lines", func() bool { return fa.records() == 2*total })
	waitFor(t, "idle", a2.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": total, "b": total}, nil)
	if c := fa.counts(); c.dups != 0 || c.resyncs != 0 || c.conns != 2 {
		t.Errorf("counts %+v: a clean restart sends nothing twice", c)
	}
}

// readPositions returns the positions file's entries.
func readPositions(t testing.TB, stateDir string) []posEntry {
	t.Helper()
	v, body, err := statefile.Read(filepath.Join(stateDir, positionsFile), positionsKind)
	if err != nil {
		return nil
	}
	pb, err := decodePositions(v, body)
	if err != nil {
		t.Fatal(err)
	}
	return pb.Sources
}

func TestCrashWithOldPositionsIsDeduplicated(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(300)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 300 })
	fi, _ := os.Stat(w.path)
	waitFor(t, "positions", func() bool {
		es := readPositions(t, opts.StateDir)
		return len(es) == 1 && es[0].Pos == fi.Size()
	})
	old, err := os.ReadFile(filepath.Join(opts.StateDir, positionsFile))
	if err != nil {
		t.Fatal(err)
	}
	w.write(300)
	waitFor(t, "more lines", func() bool { return fa.records() == 600 })
	a1.stop(t)

	// A crash: the positions on disk are older than what was acked.
	if err := statefile.WriteAtomic(filepath.Join(opts.StateDir, positionsFile), old); err != nil {
		t.Fatal(err)
	}
	w.write(100)
	a2 := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 700 })
	waitFor(t, "idle", a2.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 700}, nil)
	if c := fa.counts(); c.dups+c.resyncs == 0 {
		t.Errorf("counts %+v: want the repeats caught as duplicates", c)
	}
}

// The positions file stores, with each position, the fingerprint of the
// bytes just before it (what a restarted agent checks before it resumes).
func TestPositionsHoldTheTailFingerprint(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(300)
	ag := startAgent(t, opts)
	for _, n := range []int{300, 310} {
		waitFor(t, "lines", func() bool { return fa.records() == n })
		data, err := os.ReadFile(w.path)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "positions", func() bool {
			es := readPositions(t, opts.StateDir)
			return len(es) == 1 && es[0].Pos == int64(len(data))
		})
		e := readPositions(t, opts.StateDir)[0]
		tail := data[len(data)-fingerprintMax:]
		if e.TailLen != fingerprintMax || e.TailFP != hex64(crc64.Checksum(tail, crcTable)) || !e.hasTail {
			t.Errorf("entry %+v: tail fingerprint is not that of the %d bytes before pos", e, fingerprintMax)
		}
		w.write(10)
	}
	ag.stop(t)
}

func TestCorruptPositionsFileIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(200)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 200 })
	a1.stop(t)

	posPath := filepath.Join(opts.StateDir, positionsFile)
	garbage := []byte("logship positions v1 crc32c=00000000 len=3\nabc")
	if err := os.WriteFile(posPath, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	w.write(50)
	log, tl := newTestLog(t)
	opts.Logger = log
	a2 := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 250 })
	waitFor(t, "idle", a2.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 250}, nil)
	if c := fa.counts(); c.dups == 0 {
		t.Errorf("counts %+v: want the file sent again from 0 and dropped as duplicates", c)
	}
	kept, err := os.ReadFile(posPath + ".broken")
	if err != nil || string(kept) != string(garbage) {
		t.Errorf("positions.broken = %q, %v", kept, err)
	}
	if !strings.Contains(tl.String(), "level=ERROR") {
		t.Error("damaged positions file not logged at ERROR")
	}
	waitFor(t, "new positions", func() bool { return len(readPositions(t, opts.StateDir)) == 1 })
}

func TestConnectionDropMidStream(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	fa.setDropEvery(7)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	want := map[string]int{}
	for _, name := range []string{"a", "b", "c"} {
		w := newLogWriter(t, filepath.Join(dir, name+".log"), name)
		w.write(1000)
		want[name] = 1000
	}
	ag := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 3000 })
	fa.setDropEvery(0)
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), want, nil)
	if c := fa.counts(); c.conns < 3 {
		t.Errorf("counts %+v: want several connections", c)
	}
}

func TestFailedAckReconnects(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	fa.setFailNext(3)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(500)
	ag := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 500 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 500}, nil)
	if c := fa.counts(); c.conns < 2 {
		t.Errorf("counts %+v: want a reconnect after Failed", c)
	}
}

func TestFailoverToNextAggregator(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	// Nothing listens on the first address.
	dead := newFakeAgg(t)
	deadAddr := dead.addr()
	dead.close()
	opts := testOpts(t, dir, deadAddr, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(100)
	ag := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 100 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 100}, nil)
}

func TestResync(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.BatchBytes = 2 << 10
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(400)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return fa.records() == 400 })
	a1.stop(t)
	srcs := fa.snapshot()
	for _, s := range srcs {
		if len(s.ends) < 3 {
			t.Fatalf("only %d batches", len(s.ends))
		}
	}

	// Another aggregator has only the first two batches: the agent's
	// positions are ahead of it, and it must send the rest again.
	fb := newFakeAgg(t)
	fb.seed(srcs, 2)
	w.write(100)
	opts.Aggregators = []string{fb.addr()}
	a2 := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fb.records() == 500 })
	waitFor(t, "idle", a2.Idle)
	checkStreams(t, fb.snapshot(), map[string]int{"a": 500}, nil)
	if c := fb.counts(); c.resyncs == 0 {
		t.Errorf("counts %+v: want a resync", c)
	}
}

func TestWindowBackpressure(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	fa.setHold(true)
	opts := testOpts(t, dir, fa.addr())
	opts.WindowBytes = 32 << 10
	opts.BatchBytes = 4 << 10
	opts.ScanInterval = 5 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(20000) // about 1 MB
	ag := startAgent(t, opts)
	waitFor(t, "window full", func() bool { return ag.Stats().RawBytes >= int64(opts.WindowBytes-opts.BatchBytes) })
	iters := ag.loopIters.Load()
	waitFor(t, "time to pass", func() bool { return ag.loopIters.Load() >= iters+50 })
	st := ag.Stats()
	if limit := int64(opts.WindowBytes + opts.BatchBytes); st.RawBytes > limit || st.AckedBatches != 0 {
		t.Errorf("stats %+v: read %d bytes without acks, window %d", st, st.RawBytes, opts.WindowBytes)
	}
	if ag.Idle() {
		t.Error("idle with a full window")
	}
	if st.InflightBytes < int64(opts.WindowBytes-opts.BatchBytes) {
		t.Errorf("in-flight bytes %d with a full window", st.InflightBytes)
	}
	fa.setHold(false)
	waitFor(t, "all lines", func() bool { return fa.records() == 20000 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 20000}, nil)
	// The full spell shows in Stats once it is over: backpressure is
	// visible in the metrics.
	if st := ag.Stats(); st.WindowFull <= 0 || st.InflightBytes != 0 {
		t.Errorf("after the spell: window full %v, in flight %d", st.WindowFull, st.InflightBytes)
	}
}

func TestStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}, StartAt: "end"}}
	old := newLogWriter(t, filepath.Join(dir, "a.log"), "old")
	old.write(100)
	ag := startAgent(t, opts)
	waitFor(t, "idle", ag.Idle)
	old.stream, old.seq = "new", 0
	old.write(50)
	// A file that appears later is read from its beginning.
	later := newLogWriter(t, filepath.Join(dir, "b.log"), "later")
	later.write(20)
	waitFor(t, "new lines", func() bool { return fa.records() == 70 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"new": 50, "later": 20}, nil)
}

func TestLongLinesAreCut(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(10)
	long := strings.Repeat("L", 300<<10) // longer than one read
	w.writeRaw(long + "\n")
	w.write(10)
	ag := startAgent(t, opts)
	waitFor(t, "all lines", func() bool { return fa.records() == 21 })
	waitFor(t, "idle", ag.Idle)
	checkStreams(t, fa.snapshot(), map[string]int{"a": 20}, func(r string) bool { return r == long })
}

// An aggregator that refuses a batch as too large closes the connection;
// the agent sends the same batch again after reconnecting, and it is
// refused again. That must not go unnoticed: it is logged at ERROR, with
// the sizes. (This aggregator announces a larger max frame than it reads,
// so the agent cannot keep to it; see TestBatchesFitTheAggregatorsMaxFrame
// for one that tells the truth.)
func TestBatchRefusedAsTooLargeIsLoggedAtError(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	fa.setFrameLimits(wire.DefaultMaxFrame, 16<<10)
	opts := testOpts(t, dir, fa.addr())
	opts.Compression = batch.None
	opts.BatchBytes = 64 << 10
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	log, tl := newTestLog(t)
	opts.Logger = log
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(3000) // about 120 KiB
	ag := startAgent(t, opts)
	errLine := func() string {
		for l := range strings.Lines(tl.String()) {
			if strings.Contains(l, "level=ERROR") {
				return l
			}
		}
		return ""
	}
	waitFor(t, "an ERROR", func() bool { return errLine() != "" })
	ag.stop(t)
	l := errLine()
	for _, want := range []string{"aggregator refused", "max_frame=16777216", "first_batch_bytes=", "largest_batch_bytes=", "frame too large"} {
		if !strings.Contains(l, want) {
			t.Errorf("ERROR line %q does not say %q", l, want)
		}
	}
	if n := fa.records(); n != 0 {
		t.Errorf("%d records stored", n)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := New(Options{
		ID: "bad id", Inputs: []Input{{Topic: "no/slash", Paths: []string{"[x"}, StartAt: "middle"}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"agent id", "state dir", "aggregator", "topic", "bad path pattern", "start at"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
