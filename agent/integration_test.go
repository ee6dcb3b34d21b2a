package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/aggregator"
	"logship/internal/statefile"
	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// realAgg runs the real aggregator in the test.
type realAgg struct {
	s      *aggregator.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startRealAgg(t testing.TB, dataDir, listen string) *realAgg {
	t.Helper()
	return startRealAggWith(t, aggregator.Options{
		ID: "agg-1", Listen: listen, DataDir: dataDir, Partitions: 3,
		Fsync: logstore.FsyncNever,
	})
}

func startRealAggWith(t testing.TB, o aggregator.Options) *realAgg {
	t.Helper()
	o.Logger, _ = newTestLog(t)
	s, err := aggregator.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &realAgg{s: s, addr: s.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *realAgg) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("aggregator Run: %v", err)
	}
}

// readAggregator fetches every stored record of every topic, grouped by
// source as fakeSource values, so that checkStreams applies. A source
// stored with a gap is an error.
func readAggregator(t testing.TB, addr string) map[uint64]*fakeSource {
	t.Helper()
	return readStored(t, addr, false)
}

// readStored is readAggregator; gaps says whether a source may be stored
// with gaps (an agent that failed over to another aggregator and back).
func readStored(t testing.TB, addr string, gaps bool) map[uint64]*fakeSource {
	t.Helper()
	c, _, err := wire.DialContext(context.Background(), addr, wire.Hello{Role: wire.RoleConsumer, ID: "agent-test"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.NetConn().Close()
	call := func(typ wire.Type, payload []byte, want wire.Type) []byte {
		t.Helper()
		if err := c.WriteFrame(typ, payload); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		rt, p, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if rt != want {
			t.Fatalf("got %s, want %s", rt, want)
		}
		return p
	}
	var md wire.MetadataResult
	if err := md.Decode(call(wire.TypeMetadata, (&wire.Metadata{Req: 1}).Encode(nil), wire.TypeMetadataResult)); err != nil {
		t.Fatal(err)
	}
	dec, err := batch.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := map[uint64]*fakeSource{}
	req := uint64(1)
	for _, p := range md.Partitions {
		for off := p.Start; off < p.End; {
			req++
			f := wire.Fetch{Req: req, Topic: p.Topic, Partition: p.Partition, Offset: off, MaxBytes: 1 << 20}
			var r wire.FetchResult
			if err := r.Decode(call(wire.TypeFetch, f.Encode(nil), wire.TypeFetchResult)); err != nil {
				t.Fatal(err)
			}
			if r.Status != wire.FetchOK || len(r.Batches) == 0 {
				t.Fatalf("fetch %s/%d at %d: %s, %d bytes", p.Topic, p.Partition, off, r.Status, len(r.Batches))
			}
			for b := r.Batches; len(b) > 0; {
				n, err := batch.Size(b)
				if err != nil {
					t.Fatal(err)
				}
				h, err := batch.Parse(b[:n])
				if err != nil {
					t.Fatal(err)
				}
				s := out[h.SourceID]
				if s == nil {
					s = &fakeSource{id: h.SourceID, agent: h.Agent, topic: h.Topic, end: h.RangeStart}
					out[h.SourceID] = s
				}
				if h.RangeStart != s.end && !(gaps && h.RangeStart > s.end) {
					t.Errorf("source %016x (%s): stored batch [%d, %d) after %d", h.SourceID, h.Path, h.RangeStart, h.RangeEnd, s.end)
				}
				s.path, s.end = h.Path, h.RangeEnd
				if h.BaseOffset >= off {
					err = dec.Decode(b[:n], &h, func(r batch.Record) error {
						s.records = append(s.records, string(r.Data))
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					off = h.NextOffset()
				}
				b = b[n:]
			}
		}
	}
	return out
}

// TestAgainstRealAggregator ships two topics through the real aggregator
// while the agent rotates files, restarts cleanly, restarts after a crash
// (old positions), and the aggregator restarts: every line is stored
// exactly once.
func TestAgainstRealAggregator(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "agg")
	agg := startRealAgg(t, dataDir, "127.0.0.1:0")
	addr := agg.addr
	opts := testOpts(t, dir, addr)
	opts.Inputs = []Input{
		{Topic: "app", Paths: []string{filepath.Join(dir, "app", "**", "*.log*")}},
		{Topic: "web", Paths: []string{filepath.Join(dir, "web", "*.log")}},
	}
	os.MkdirAll(filepath.Join(dir, "app", "x"), 0o755)
	os.MkdirAll(filepath.Join(dir, "web"), 0o755)
	app := newLogWriter(t, filepath.Join(dir, "app", "x", "app.log"), "app")
	web := newLogWriter(t, filepath.Join(dir, "web", "access.log"), "web")
	web2 := newLogWriter(t, filepath.Join(dir, "web", "error.log"), "web2")
	writeAll := func(n int) {
		app.write(n)
		web.write(n)
		web2.write(n / 2)
	}
	stored := func() int {
		n := 0
		for _, s := range readAggregator(t, addr) {
			n += len(s.records)
		}
		return n
	}
	total := func() int { return app.seq + web.seq + web2.seq }

	writeAll(500)
	a1 := startAgent(t, opts)
	waitFor(t, "first lines", func() bool { return a1.Idle() && stored() == total() })

	// Rotation, matching the glob.
	writeAll(200)
	app.rotate(filepath.Join(dir, "app", "x", "app.log.1"), 5)
	writeAll(200)
	waitFor(t, "rotated lines", func() bool { return a1.Idle() && stored() == total() })
	posPath := filepath.Join(opts.StateDir, positionsFile)
	old, err := os.ReadFile(posPath)
	if err != nil {
		t.Fatal(err)
	}

	// Clean agent restart mid-stream.
	writeAll(300)
	a1.stop(t)
	writeAll(100)
	a2 := startAgent(t, opts)
	waitFor(t, "after a restart", func() bool { return a2.Idle() && stored() == total() })

	// Crash: positions older than what was acknowledged.
	a2.stop(t)
	if err := statefile.WriteAtomic(posPath, old); err != nil {
		t.Fatal(err)
	}
	writeAll(100)
	a3 := startAgent(t, opts)
	waitFor(t, "after a crash", func() bool { return a3.Idle() && stored() == total() })
	if st := agg.s.Stats(); st.Duplicates == 0 || st.Gaps != 0 {
		t.Errorf("aggregator stats %+v: want the repeats dropped as duplicates, and no gaps", st)
	}

	// The aggregator restarts on the same address; the agent reconnects.
	agg.stop(t)
	writeAll(100)
	agg = startRealAgg(t, dataDir, addr)
	writeAll(100)
	waitFor(t, "after an aggregator restart", func() bool { return a3.Idle() && stored() == total() })

	srcs := readAggregator(t, addr)
	checkStreams(t, srcs, map[string]int{"app": app.seq, "web": web.seq, "web2": web2.seq}, nil)
	for _, s := range srcs {
		want := "web"
		if filepath.Base(filepath.Dir(s.path)) == "x" {
			want = "app"
		}
		if s.topic != want || s.agent != opts.ID {
			t.Errorf("source %s: topic %q agent %q", s.path, s.topic, s.agent)
		}
	}
	if t.Failed() {
		for id, s := range srcs {
			t.Logf("%016x %s %s %d records", id, s.topic, s.path, len(s.records))
		}
	}
}

// An aggregator with a max frame smaller than what the agent's batches
// would be (64 KiB, the smallest it takes, against BatchBytes 256 KiB of
// incompressible lines, and a line longer than the frame): the agent keeps
// the batches of that session to what fits, and cuts the long line. Before,
// it ignored the Welcome's max frame: the aggregator refused the first
// batch and closed the connection, and the agent sent the same batch
// again after every reconnect, forever; nothing after it was shipped.
func TestBatchesFitTheAggregatorsMaxFrame(t *testing.T) {
	dir := t.TempDir()
	agg := startRealAggWith(t, aggregator.Options{
		ID: "agg-1", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "agg"), Partitions: 1,
		Fsync: logstore.FsyncNever, MaxFrameBytes: 64 << 10,
	})
	opts := testOpts(t, dir, agg.addr)
	opts.Compression = batch.None
	opts.BatchBytes = 256 << 10
	opts.WindowBytes = 1 << 20
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(5000) // about 200 KiB
	long := strings.Repeat("L", 100<<10)
	w.writeRaw(long + "\n")
	w.write(5000)
	ag := startAgent(t, opts)
	waitFor(t, "everything shipped, or a frame refused", func() bool {
		return ag.Idle() || agg.s.Stats().Rejected["protocol"] > 0
	})

	srcs := readAggregator(t, agg.addr)
	var pieces []string
	checkStreams(t, srcs, map[string]int{"a": 10000}, func(r string) bool {
		if strings.Trim(r, "L") == "" {
			pieces = append(pieces, r)
			return true
		}
		return false
	})
	if got := strings.Join(pieces, ""); got != long || len(pieces) < 2 {
		t.Errorf("the long line arrived as %d records of %d bytes in all, want it cut into several records of %d bytes in all", len(pieces), len(got), len(long))
	}
	if st, ast := agg.s.Stats(), ag.Stats(); st.Rejected["protocol"] != 0 || st.BatchesIn != ast.Batches {
		t.Errorf("aggregator stats %+v, agent stats %+v: want no refused frame, no batch sent twice", st, ast)
	}
}
