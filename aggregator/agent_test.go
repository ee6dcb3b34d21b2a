package aggregator

import (
	"fmt"
	"sync"
	"testing"

	"logship/internal/wire"
)

// TestProduceFetch pipelines batches of two topics over one connection and
// reads them back: acks in order, contiguous offsets, the bytes as sent.
func TestProduceFetch(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	app := src{"web-01", "app", 7}
	web := src{"web-01", "nginx-access", 7}
	var seqs []uint64
	type sent struct {
		s     src
		lines []string
	}
	var want []sent
	for i := range 10 {
		s := app
		if i%2 == 1 {
			s = web
		}
		from := int64(i / 2 * 100)
		lines := []string{fmt.Sprintf("%s line %d a", s.topic, i), fmt.Sprintf("%s line %d b", s.topic, i)}
		seqs = append(seqs, a.send(mkBatch(t, s, from, from+100, lines...)))
		want = append(want, sent{s, lines})
	}
	next := map[string]int64{}
	part := map[string]uint32{}
	for i, seq := range seqs {
		ack, err := a.readAck()
		if err != nil {
			t.Fatal(err)
		}
		topic := want[i].s.topic
		if ack.Seq != seq || ack.Status != wire.AckAppended || ack.StoredEnd != int64(i/2*100+100) {
			t.Fatalf("ack %d: %+v", i, ack)
		}
		if p, ok := part[topic]; ok && p != ack.Partition {
			t.Fatalf("source moved from partition %d to %d", p, ack.Partition)
		}
		part[topic] = ack.Partition
		if ack.BaseOffset != next[topic] {
			t.Fatalf("ack %d: base offset %d, want %d", i, ack.BaseOffset, next[topic])
		}
		next[topic] += 2
	}
	cc := dialConsumer(t, ts.Addr())
	for _, topic := range []string{"app", "nginx-access"} {
		got := cc.readAll(topic, part[topic])
		if len(got) != 5 {
			t.Fatalf("%s: %d batches", topic, len(got))
		}
		i := 0
		for _, w := range want {
			if w.s.topic != topic {
				continue
			}
			if fmt.Sprint(got[i].records) != fmt.Sprint(w.lines) || got[i].h.Topic != topic || got[i].h.AppendTime == 0 {
				t.Fatalf("%s batch %d: %+v %q", topic, i, got[i].h, got[i].records)
			}
			i++
		}
	}
	if st := ts.Stats(); st.Appended != 10 || st.BatchesIn != 10 || st.Connections != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDedupRules walks one source through every dedup rule.
func TestDedupRules(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	s := src{"web-01", "app", 42}

	expect(t, a.produce(mkBatch(t, s, 0, 100)), wire.AckAppended, 100)
	// The same batch again: acknowledged, not stored.
	expect(t, a.produce(mkBatch(t, s, 0, 100)), wire.AckDuplicate, 100)
	expect(t, a.produce(mkBatch(t, s, 100, 200)), wire.AckAppended, 200)
	// A batch inside what is stored.
	expect(t, a.produce(mkBatch(t, s, 50, 150)), wire.AckDuplicate, 200)
	// Overlapping the stored end: Resync.
	expect(t, a.produce(mkBatch(t, s, 150, 250)), wire.AckResync, 200)
	// The next batch the agent had in flight (a gap now): Resync again.
	expect(t, a.produce(mkBatch(t, s, 250, 350)), wire.AckResync, 200)
	// The agent resumes at the stored end.
	expect(t, a.produce(mkBatch(t, s, 200, 300)), wire.AckAppended, 300)
	// Resumed: the mark is gone, so a gap on this connection is stored.
	expect(t, a.produce(mkBatch(t, s, 400, 500)), wire.AckAppended, 500)
	if len(ts.logs.lines("level=INFO", "gap", "from=300", "to=400", "source=42")) != 1 {
		t.Fatalf("gap not logged:\n%s", ts.logs)
	}

	cc := dialConsumer(t, ts.Addr())
	var ranges []string
	for _, batches := range cc.readTopic("app") {
		for _, b := range batches {
			ranges = append(ranges, fmt.Sprintf("%d-%d", b.h.RangeStart, b.h.RangeEnd))
		}
	}
	if fmt.Sprint(ranges) != "[0-100 100-200 200-300 400-500]" {
		t.Fatalf("stored %v", ranges)
	}
	if st := ts.Stats(); st.Appended != 4 || st.Duplicates != 2 || st.Resyncs != 2 || st.Gaps != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResyncIsPerConnection: the resync mark belongs to the connection
// that got the Resync; a new connection with a gap is a deliberate skip.
func TestResyncIsPerConnection(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	s := src{"web-01", "app", 1}
	a := dialAgent(t, ts.Addr(), "web-01")
	expect(t, a.produce(mkBatch(t, s, 0, 100)), wire.AckAppended, 100)
	expect(t, a.produce(mkBatch(t, s, 50, 150)), wire.AckResync, 100)
	expect(t, a.produce(mkBatch(t, s, 200, 300)), wire.AckResync, 100)
	b := dialAgent(t, ts.Addr(), "web-01")
	expect(t, b.produce(mkBatch(t, s, 200, 300)), wire.AckAppended, 300)
	// And a, still marked, gets Resync for the next gap at the new end.
	expect(t, a.produce(mkBatch(t, s, 400, 500)), wire.AckResync, 300)
}

// TestDedupSurvivesRestart: the dedup state is rebuilt from the log, and
// a source keeps its partition even when the partition count changes.
func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir, nil)
	// Find a source whose hash partition differs between 4 and 7
	// partitions, to see that the stored one wins after the change.
	var s src
	for id := uint64(1); ; id++ {
		k := sourceKey{"web-01", id}
		if hashPartition(k, 4) != hashPartition(k, 7) {
			s = src{"web-01", "app", id}
			break
		}
	}
	a := dialAgent(t, ts.Addr(), "web-01")
	first := a.produce(mkBatch(t, s, 0, 100))
	expect(t, first, wire.AckAppended, 100)
	expect(t, a.produce(mkBatch(t, s, 100, 200)), wire.AckAppended, 200)

	ts = ts.restart(t, func(o *Options) { o.Partitions = 7 })
	a = dialAgent(t, ts.Addr(), "web-01")
	dup := a.produce(mkBatch(t, s, 100, 200))
	expect(t, dup, wire.AckDuplicate, 200)
	expect(t, a.produce(mkBatch(t, s, 150, 250)), wire.AckResync, 200)
	next := a.produce(mkBatch(t, s, 200, 300))
	expect(t, next, wire.AckAppended, 300)
	if dup.Partition != first.Partition || next.Partition != first.Partition || next.BaseOffset != 2 {
		t.Fatalf("first %+v, after restart %+v", first, next)
	}
	// A new source follows the new partition count.
	n := src{"web-01", "app", s.id + 1000}
	ack := a.produce(mkBatch(t, n, 0, 10))
	if int(ack.Partition) != hashPartition(sourceKey{n.agent, n.id}, 7) {
		t.Fatalf("new source in partition %d", ack.Partition)
	}
	cc := dialConsumer(t, ts.Addr())
	count := 0
	for _, b := range cc.readAll("app", first.Partition) {
		if b.h.SourceID == s.id {
			count++
		}
	}
	if count != 3 {
		t.Fatalf("%d batches stored", count)
	}
}

// TestManyAgents runs 50 agent connections at once. Each ships its own
// sources, sends every batch twice, and pairs of connections share an
// agent id and a source (a reconnect racing its old connection): every
// range must be stored exactly once, in order.
func TestManyAgents(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	const conns, batches = 50, 10
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := fmt.Sprintf("host-%02d", i/2) // two connections per agent
			a := dialAgent(t, ts.Addr(), agent)
			own := src{agent, "app", uint64(100 + i)}
			shared := src{agent, "app", 1}
			// Pipeline everything, then read the acks.
			n := 0
			for j := range batches {
				from := int64(j * 10)
				for range 2 {
					a.send(mkBatch(t, own, from, from+10))
					a.send(mkBatch(t, shared, from, from+10))
					n += 2
				}
			}
			for range n {
				ack, err := a.readAck()
				if err != nil {
					errs <- err
					return
				}
				if ack.Status == wire.AckFailed {
					errs <- fmt.Errorf("failed ack %+v", ack)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cc := dialConsumer(t, ts.Addr())
	ends := map[sourceKey]int64{}
	total := 0
	for _, batches := range cc.readTopic("app") {
		for _, b := range batches {
			k := sourceKey{b.h.Agent, b.h.SourceID}
			if b.h.RangeStart != ends[k] {
				t.Fatalf("source %v: stored [%d, %d) after %d", k, b.h.RangeStart, b.h.RangeEnd, ends[k])
			}
			ends[k] = b.h.RangeEnd
			total++
		}
	}
	if want := conns*batches + conns/2*batches; total != want {
		t.Fatalf("%d batches stored, want %d", total, want)
	}
	for k, end := range ends {
		if end != batches*10 {
			t.Fatalf("source %v ends at %d", k, end)
		}
	}
}
