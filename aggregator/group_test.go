package aggregator

import (
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// groupCase is a batch of the grouped-append tests: the source, the range,
// and the ack it gets (after the batches before it).
type groupCase struct {
	s        src
	from, to int64
	want     wire.AckStatus
}

// groupCases mixes, for two sources of one partition, appends, duplicates,
// a gap, a resync and the stale batch behind it, and the resumed source.
func groupCases() []groupCase {
	a := src{agent: "a1", topic: "app", id: 1}
	b := src{agent: "a1", topic: "app", id: 2}
	const app, dup, resync = wire.AckAppended, wire.AckDuplicate, wire.AckResync
	return []groupCase{
		{a, 0, 10, app}, {a, 10, 20, app}, {a, 10, 20, dup}, // a duplicate right behind its original
		{b, 0, 5, app}, {a, 30, 40, app}, // a gap: stored
		{a, 20, 30, dup},                                      // below the stored end
		{b, 3, 8, resync}, {b, 8, 12, resync}, {b, 5, 8, app}, // a resync; the stale batch behind it; the resumed source
		{b, 8, 12, app}, {a, 40, 50, app}, {b, 8, 12, dup}, {b, 12, 20, app}, {a, 0, 10, dup},
	}
}

func groupConn(ts *testServer) *agentConn {
	return &agentConn{s: ts.Server, id: "a1", log: slog.New(slog.NewTextHandler(io.Discard, nil)), resyncing: make(map[resyncKey]struct{})}
}

func groupFrames(t *testing.T, cases []groupCase) []inFrame {
	t.Helper()
	out := make([]inFrame, len(cases))
	for i, c := range cases {
		b := mkBatch(t, c.s, c.from, c.to)
		h, err := batch.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = inFrame{produce: true, seq: uint64(i + 1), b: b, h: h}
	}
	return out
}

// Batches appended together are decided as one after the other would be:
// the same acks, the same log, whatever the groups (the appender groups
// what it finds queued).
func TestGroupedAppendsDecideAsOneByOne(t *testing.T) {
	one := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	cases := groupCases()
	want := make([]ack, 0, len(cases))
	a := groupConn(one)
	for i, it := range groupFrames(t, cases) {
		acks := a.produce([]inFrame{it}, 0)
		if len(acks) != 1 || acks[0].Status != cases[i].want {
			t.Fatalf("batch %d (%+v) alone: acks %+v, want %s", i, cases[i], acks, cases[i].want)
		}
		want = append(want, acks...)
	}
	wantLog := dialConsumer(t, one.Addr()).readAll("app", 0)

	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
		a := groupConn(ts)
		frames := groupFrames(t, cases)
		var got []ack
		for i := 0; i < len(frames); {
			k := min(len(frames)-i, 1+rng.IntN(8))
			if round == 0 {
				k = len(frames) // all in one group
			}
			got = append(got, a.produce(frames[i:i+k], 0)...)
			i += k
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: %d acks, want %d", round, len(got), len(want))
		}
		for i := range got {
			if got[i].ProduceAck != want[i].ProduceAck || got[i].wait != want[i].wait {
				t.Errorf("round %d, batch %d (%+v): ack %+v wait %d, one by one %+v wait %d",
					round, i, cases[i], got[i].ProduceAck, got[i].wait, want[i].ProduceAck, want[i].wait)
			}
		}
		cc := dialConsumer(t, ts.Addr())
		gotLog := cc.readAll("app", 0)
		cc.c.NetConn().Close() // not left for the stop to say goodbye to
		if len(gotLog) != len(wantLog) {
			t.Fatalf("round %d: %d batches stored, want %d", round, len(gotLog), len(wantLog))
		}
		for i := range gotLog {
			g, w := gotLog[i], wantLog[i]
			if g.h.BaseOffset != w.h.BaseOffset || g.h.SourceID != w.h.SourceID || g.h.RangeStart != w.h.RangeStart || !slices.Equal(g.records, w.records) {
				t.Errorf("round %d: stored batch %d differs: %+v, one by one %+v", round, i, gotLog[i], wantLog[i])
			}
		}
		ts.stop(t)
	}
}

// Through a connection: the appender takes what the reader queued, in
// order, grouping the Produce frames of one partition and handling the
// frames between them (a heartbeat, another topic) in their place; every
// ack comes back in order with the status the batch gets alone. A
// connection that is not pipelined groups the frames it finds whole in
// its socket (gather) the same way.
func TestAppenderGroupsQueuedFrames(t *testing.T) {
	for _, mode := range agentModes {
		t.Run(mode.name, func(t *testing.T) { testAppenderGroupsQueuedFrames(t, mode.idle) })
	}
}

func testAppenderGroupsQueuedFrames(t *testing.T, idle int) {
	ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	var hold sync.Mutex
	hold.Lock()
	first := true
	ts.Server.beforeTakeHook = func(agent string) {
		if agent == "a1" && first { // a1's first wait: until the frames are queued
			first = false
			hold.Lock()
		}
	}
	openIdle(t, ts.Addr(), idle, idle == 0)
	cases := groupCases()
	other := src{agent: "a1", topic: "db", id: 7}
	ag := dialAgent(t, ts.Addr(), "a1")
	var out []byte
	var wantSeq []uint64
	seq := uint64(0)
	for i, c := range cases {
		seq++
		out = append(out, produceFrameOf(t, mkBatch(t, c.s, c.from, c.to), seq)...)
		wantSeq = append(wantSeq, seq)
		if i == 4 {
			out = append(out, heartbeatFrame(t, 99)...)
		}
		if i == 8 {
			seq++
			out = append(out, produceFrameOf(t, mkBatch(t, other, 0, 10), seq)...)
			wantSeq = append(wantSeq, seq)
		}
	}
	before, appends := ts.Stats().WireBytesIn, appendCalls(ts)
	werr := writeInBackground(ag.c.NetConn(), out, false)
	if idle == 0 {
		waitUntil(t, func() bool { return ts.Stats().WireBytesIn-before >= int64(len(out)) })
	} else if err := <-werr; err != nil { // written: in the socket (loopback), not read
		t.Fatal(err)
	}
	hold.Unlock()
	if idle == 0 {
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}

	statuses := map[uint64]wire.AckStatus{}
	heartbeats := 0
	for range wantSeq {
		typ, p, err := ag.c.ReadFrame()
		for err == nil && typ == wire.TypeHeartbeat {
			heartbeats++
			typ, p, err = ag.c.ReadFrame()
		}
		if err != nil || typ != wire.TypeProduceAck {
			t.Fatalf("read: %s, %v", typ, err)
		}
		var ack wire.ProduceAck
		if err := ack.Decode(p); err != nil {
			t.Fatal(err)
		}
		if ack.Seq != wantSeq[len(statuses)] {
			t.Fatalf("ack of seq %d, want %d", ack.Seq, wantSeq[len(statuses)])
		}
		statuses[ack.Seq] = ack.Status
	}
	if heartbeats != 1 {
		t.Errorf("%d heartbeat answers, want 1", heartbeats)
	}
	for i, c := range cases {
		s := uint64(i + 1)
		if i > 8 {
			s++ // the other topic's batch came after batch 8
		}
		if got := statuses[s]; got != c.want {
			t.Errorf("batch %d (%+v): %s", i, c, got)
		}
	}
	if st := statuses[10]; st != wire.AckAppended {
		t.Errorf("the other topic's batch: %s", st)
	}
	// The batches of topic app around the heartbeat and the other topic's
	// batch: four runs, each one append.
	if n := appendCalls(ts) - appends; n != 4 {
		t.Errorf("%d appends for %d batches in 4 runs, want 4", n, len(wantSeq))
	}
}

// appendCalls is how many appends (one per group) the server has made.
func appendCalls(ts *testServer) (n uint64) {
	for i := range ts.Server.stats.appendLatency.buckets {
		n += ts.Server.stats.appendLatency.buckets[i].Load()
	}
	return n
}

// produceFrameOf is the Produce frame of batch b with seq.
func produceFrameOf(t *testing.T, b []byte, seq uint64) []byte {
	t.Helper()
	p := append(wire.EncodeProduceHeader(nil, seq), b...)
	return rawFrame(wire.TypeProduce, p)
}

// heartbeatFrame is a Heartbeat frame with nonce.
func heartbeatFrame(t *testing.T, nonce uint64) []byte {
	t.Helper()
	return rawFrame(wire.TypeHeartbeat, (&wire.Heartbeat{Nonce: nonce}).Encode(nil))
}

func rawFrame(typ wire.Type, payload []byte) []byte {
	f := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)))
	f = append(f, byte(typ))
	return append(f, payload...)
}
