package aggregator

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/statefile"
	"logship/internal/wire"
)

func TestMetadata(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	ack1 := a.produce(mkBatch(t, src{"web-01", "app", 1}, 0, 10, "a", "b", "c"))
	ack2 := a.produce(mkBatch(t, src{"web-01", "web", 1}, 0, 10))
	cc := dialConsumer(t, ts.Addr())
	all := cc.metadata()
	if len(all) != 2 || all[0] != (wire.PartitionInfo{Topic: "app", Partition: ack1.Partition, Start: 0, End: 3}) ||
		all[1] != (wire.PartitionInfo{Topic: "web", Partition: ack2.Partition, Start: 0, End: 1}) {
		t.Fatalf("metadata %+v", all)
	}
	if got := cc.metadata("web", "nope"); len(got) != 1 || got[0].Topic != "web" {
		t.Fatalf("metadata(web, nope) %+v", got)
	}
	if got := cc.metadata("nope"); len(got) != 0 {
		t.Fatalf("metadata(nope) %+v", got)
	}
}

func TestFetch(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	s := src{"web-01", "app", 1}
	var p uint32
	for i := range 5 {
		ack := a.produce(mkBatch(t, s, int64(i*10), int64(i*10+10), "x", "y"))
		p = ack.Partition
	}
	cc := dialConsumer(t, ts.Addr())
	t.Run("inside-a-batch", func(t *testing.T) {
		// Offset 3 is the second record of the second batch: the answer
		// starts with that batch.
		r := cc.fetch("app", p, 3, 0, 0)
		got := splitBatches(t, r.Batches)
		if r.Status != wire.FetchOK || r.Start != 0 || r.End != 10 || len(got) != 4 || got[0].h.BaseOffset != 2 {
			t.Fatalf("%s [%d, %d] %d batches", r.Status, r.Start, r.End, len(got))
		}
	})
	t.Run("max-bytes", func(t *testing.T) {
		// A limit smaller than one batch still returns one batch.
		r := cc.fetch("app", p, 0, 1, 0)
		if got := splitBatches(t, r.Batches); len(got) != 1 {
			t.Fatalf("%d batches", len(got))
		}
	})
	t.Run("records-counted", func(t *testing.T) {
		// Records out: 4 batches of 2 from offset 3, then 1 batch (cut by
		// max bytes) of 2.
		if st := ts.Stats(); st.FetchRecords != 8+2 {
			t.Fatalf("%d records counted out, want 10", st.FetchRecords)
		}
	})
	t.Run("at-end", func(t *testing.T) {
		r := cc.fetch("app", p, 10, 0, 20)
		if r.Status != wire.FetchOK || len(r.Batches) != 0 || r.End != 10 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("out-of-range", func(t *testing.T) {
		for _, off := range []int64{11, -1, 1 << 40} {
			r := cc.fetch("app", p, off, 0, 0)
			if r.Status != wire.FetchOutOfRange || r.Start != 0 || r.End != 10 || len(r.Batches) != 0 {
				t.Fatalf("offset %d: %+v", off, r)
			}
		}
	})
	t.Run("unknown-partition", func(t *testing.T) {
		for _, tp := range []struct {
			topic string
			part  uint32
		}{{"app", p + 100}, {"nope", 0}, {"../x", 0}} {
			if r := cc.fetch(tp.topic, tp.part, 0, 0, 0); r.Status != wire.FetchUnknownPartition {
				t.Fatalf("%s-%d: %+v", tp.topic, tp.part, r)
			}
		}
	})
}

// TestFetchLongPollWakesOnAppend: a Fetch waiting at the end of the log is
// answered as soon as a batch arrives, well before its max wait.
func TestFetchLongPollWakesOnAppend(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	s := src{"web-01", "app", 1}
	ack := a.produce(mkBatch(t, s, 0, 10))
	cc := dialConsumer(t, ts.Addr())
	got := make(chan wire.FetchResult, 1)
	begin := time.Now()
	go func() { got <- cc.fetch("app", ack.Partition, 1, 0, 20_000) }()
	// Wait until the server has the Fetch (it counts it before it waits).
	waitUntil(t, func() bool { return ts.Stats().Fetches == 1 })
	a.produce(mkBatch(t, s, 10, 20, "new"))
	r := <-got
	if b := splitBatches(t, r.Batches); len(b) != 1 || b[0].records[0] != "new" || b[0].h.BaseOffset != 1 {
		t.Fatalf("%+v", r)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("long poll took %v", d)
	}
}

// TestShutdownIsPrompt: shutdown waits neither for a long poll, nor for
// idle connections, nor for a client that never finishes its handshake.
func TestShutdownIsPrompt(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	ack := a.produce(mkBatch(t, src{"web-01", "app", 1}, 0, 10))
	dialAgent(t, ts.Addr(), "web-02")
	dialConsumer(t, ts.Addr())
	silent, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cc := dialConsumer(t, ts.Addr())
	got := make(chan wire.FetchResult, 1)
	go func() { got <- cc.fetch("app", ack.Partition, 1, 0, 30_000) }()
	waitUntil(t, func() bool { return ts.Stats().Fetches == 1 })
	begin := time.Now()
	ts.stop(t)
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if r := <-got; r.Status != wire.FetchOK || len(r.Batches) != 0 {
		t.Fatalf("%+v", r)
	}
	// Then the consumer is told why the connection closes.
	typ, p, err := cc.c.ReadFrame()
	if err != nil || typ != wire.TypeError {
		t.Fatalf("after the long poll: %s frame, %v; want an Error frame", typ, err)
	}
	if re := (*wire.RemoteError)(nil); !errors.As(wire.DecodeError(p), &re) || re.Code != wire.CodeUnavailable {
		t.Fatalf("error frame %v, want unavailable: shutting down", wire.DecodeError(p))
	}
}

func TestOffsets(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir, nil)
	cc := dialConsumer(t, ts.Addr())
	if got := cc.offsets("hdfs-main", "app"); len(got) != 0 {
		t.Fatalf("offsets before any commit: %v", got)
	}
	for _, c := range []struct {
		topic string
		part  uint32
		off   int64
	}{{"app", 2, 100}, {"app", 0, 7}, {"app", 2, 150}, {"web", 1, 3}} {
		if r := cc.commit("hdfs-main", c.topic, c.part, c.off); r.Status != wire.CommitOK {
			t.Fatalf("commit %+v: %+v", c, r)
		}
	}
	if r := cc.commit("cassandra", "app", 0, 1); r.Status != wire.CommitOK {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []struct {
		sink, topic string
		off         int64
		why         string
	}{{"a/b", "app", 1, "sink name"}, {"", "app", 1, "sink name"}, {"s", "..", 1, "topic"}, {"s", "app", -1, "negative"}} {
		if r := cc.commit(bad.sink, bad.topic, 0, bad.off); r.Status != wire.CommitInvalid || !strings.Contains(r.Message, bad.why) {
			t.Fatalf("commit %+v: %+v", bad, r)
		}
	}
	check := func(cc *consumerClient) {
		t.Helper()
		if got := cc.offsets("hdfs-main", "app"); len(got) != 2 || got[0] != (wire.PartitionOffset{Partition: 0, Offset: 7}) || got[1] != (wire.PartitionOffset{Partition: 2, Offset: 150}) {
			t.Fatalf("hdfs-main app: %v", got)
		}
		if got := cc.offsets("hdfs-main", "web"); len(got) != 1 || got[0] != (wire.PartitionOffset{Partition: 1, Offset: 3}) {
			t.Fatalf("hdfs-main web: %v", got)
		}
		if got := cc.offsets("cassandra", "app"); len(got) != 1 || got[0].Offset != 1 {
			t.Fatalf("cassandra app: %v", got)
		}
		if got := cc.offsets("cassandra", "web"); len(got) != 0 {
			t.Fatalf("cassandra web: %v", got)
		}
	}
	check(cc)
	// The file is a statefile with the documented body.
	v, body, err := statefile.Read(filepath.Join(dir, "offsets", "hdfs-main.offsets"), "offsets")
	if err != nil || v != 2 || string(body) != `{"app":{"0":{"offset":7,"epoch":0},"2":{"offset":150,"epoch":0}},"web":{"1":{"offset":3,"epoch":0}}}` {
		t.Fatalf("v%d %s %v", v, body, err)
	}
	// A leftover temporary file is removed at startup.
	tmp := filepath.Join(dir, "offsets", ".hdfs-main.offsets.tmp-12345")
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts = ts.restart(t, nil)
	check(dialConsumer(t, ts.Addr()))
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temporary file: %v", err)
	}
}

// TestOffsetsCorruptFileStopsStartup: a damaged offsets file is an error
// naming it, not a silent reset of the sink.
func TestOffsetsCorruptFileStopsStartup(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "offsets"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "offsets", "s.offsets")
	for name, data := range map[string][]byte{
		"crc":       []byte("logship offsets v1 crc32c=00000000 len=2\n{}"),
		"partition": statefile.Encode("offsets", 1, []byte(`{"app":{"x":1}}`)),
		"topic":     statefile.Encode("offsets", 1, []byte(`{"a b":{"1":1}}`)),
		"version":   statefile.Encode("offsets", 3, []byte(`{}`)),
		"negative":  statefile.Encode("offsets", 2, []byte(`{"app":{"1":{"offset":-1,"epoch":0}}}`)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{ID: "agg-1", Listen: "127.0.0.1:0", DataDir: dir})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestOffsetReset: a reset moves the offset under a new epoch; a commit
// under the old epoch is refused with CommitReset and changes nothing, and
// one under the new epoch is stored. Epochs survive a restart.
func TestOffsetReset(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir, nil)
	cc := dialConsumer(t, ts.Addr())
	if r := cc.commit("s", "app", 0, 100); r.Status != wire.CommitOK {
		t.Fatalf("%+v", r)
	}
	if r := cc.reset("s", "app", 0, 40); r.Status != wire.CommitOK {
		t.Fatalf("reset: %+v", r)
	}
	want := wire.PartitionOffset{Partition: 0, Offset: 40, Epoch: 1}
	if got := cc.offsets("s", "app"); len(got) != 1 || got[0] != want {
		t.Fatalf("after reset: %v", got)
	}
	if r := cc.commit("s", "app", 0, 120); r.Status != wire.CommitReset || !strings.Contains(r.Message, "epoch 1") {
		t.Fatalf("stale commit: %+v", r)
	}
	if got := cc.offsets("s", "app"); got[0] != want {
		t.Fatalf("a stale commit changed the offset: %v", got)
	}
	if r := cc.commitEpoch("s", "app", 0, 41, 1); r.Status != wire.CommitOK {
		t.Fatalf("commit under the new epoch: %+v", r)
	}
	// A reset of a partition with no commit starts at epoch 1 too.
	if r := cc.reset("s", "app", 3, 0); r.Status != wire.CommitOK {
		t.Fatalf("%+v", r)
	}
	if r := cc.reset("s", "app", 0, -1); r.Status != wire.CommitInvalid {
		t.Fatalf("negative reset: %+v", r)
	}
	ts = ts.restart(t, nil)
	got := dialConsumer(t, ts.Addr()).offsets("s", "app")
	if len(got) != 2 || got[0] != (wire.PartitionOffset{Partition: 0, Offset: 41, Epoch: 1}) || got[1] != (wire.PartitionOffset{Partition: 3, Offset: 0, Epoch: 1}) {
		t.Fatalf("after restart: %v", got)
	}
}

// TestOffsetsVersion1: a version 1 file (no epochs) is read as epoch 0.
func TestOffsetsVersion1(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "offsets"), 0o755); err != nil {
		t.Fatal(err)
	}
	v1 := statefile.Encode("offsets", 1, []byte(`{"app":{"0":7,"2":150}}`))
	if err := os.WriteFile(filepath.Join(dir, "offsets", "s.offsets"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := start(t, dir, nil)
	got := dialConsumer(t, ts.Addr()).offsets("s", "app")
	if len(got) != 2 || got[0] != (wire.PartitionOffset{Partition: 0, Offset: 7}) || got[1] != (wire.PartitionOffset{Partition: 2, Offset: 150}) {
		t.Fatalf("%v", got)
	}
}
