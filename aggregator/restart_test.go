package aggregator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"logship/internal/wire"
	"logship/logstore"
)

// TestDedupRestartWithoutScan: the dedup state survives a clean restart
// and a crash (a copy of the data directory taken while the server runs:
// no clean marks) over many segments, from the log's source tables: no
// segment is read to rebuild it. Sources whose batches are only in old
// segments are still known.
func TestDedupRestartWithoutScan(t *testing.T) {
	small := func(o *Options) {
		o.Partitions, o.SegmentBytes, o.Fsync = 1, logstore.MinSegmentBytes, logstore.FsyncAlways
	}
	dir := t.TempDir()
	ts := start(t, dir, small)
	a := dialAgent(t, ts.Addr(), "web-01")
	sources := []src{{"web-01", "app", 1}, {"web-01", "app", 2}, {"web-01", "app", 3}}
	ends := map[uint64]int64{}
	for i := range 40 {
		s := sources[0]
		if i < 6 {
			s = sources[1+i%2] // only in the first segments
		}
		from := ends[s.id]
		ends[s.id] = from + 10
		expect(t, a.produce(mkBatch(t, s, from, from+10)), wire.AckAppended, from+10)
	}
	a.close()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "app-0", "*.log"))
	if len(segs) < 5 {
		t.Fatalf("%d segments", len(segs))
	}
	crash := t.TempDir()
	if err := os.CopyFS(crash, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, ts *testServer) {
		t.Helper()
		for _, w := range []string{"replaying segment", "rebuilding the source table", "level=WARN"} {
			if l := ts.logs.lines(w); len(l) > 0 {
				t.Fatalf("restart logged %q:\n%s", w, strings.Join(l, "\n"))
			}
		}
		if len(ts.logs.lines("dedup state rebuilt", "sources=3")) != 1 {
			t.Fatalf("logs:\n%s", ts.logs)
		}
		a := dialAgent(t, ts.Addr(), "web-01")
		defer a.close()
		for _, s := range sources {
			expect(t, a.produce(mkBatch(t, s, ends[s.id]-10, ends[s.id])), wire.AckDuplicate, ends[s.id])
		}
		expect(t, a.produce(mkBatch(t, sources[1], ends[2], ends[2]+10)), wire.AckAppended, ends[2]+10)
	}
	t.Run("clean", func(t *testing.T) {
		check(t, ts.restart(t, small))
	})
	t.Run("crash", func(t *testing.T) {
		check(t, start(t, crash, small))
	})
}
