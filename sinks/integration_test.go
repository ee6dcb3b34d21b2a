package sinks_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"logship/aggregator"
	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/file"
)

// realAgg is a running aggregator.Server.
type realAgg struct {
	*aggregator.Server
	cancel context.CancelFunc
	done   chan error
}

func startReal(t *testing.T, dir, listen string) *realAgg {
	t.Helper()
	s, err := aggregator.New(aggregator.Options{ID: aggID, Listen: listen, DataDir: dir, Partitions: 2, Fsync: logstore.FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &realAgg{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- s.Run(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *realAgg) stop() {
	a.cancel()
	if a.done != nil {
		<-a.done
		a.done = nil
	}
}

// produce sends, as an agent, batches of lines for source src of topic
// covering byte ranges from where the source's last batch ended, and
// records in want, by partition and offset, the line the aggregator
// stored. ends holds each source's stored end.
func produce(t *testing.T, addr, topic string, srcs []uint64, batches, perBatch int, ends map[uint64]int64, want map[int]map[int64]string) {
	t.Helper()
	c, _, err := wire.DialContext(context.Background(), addr, wire.Hello{Role: wire.RoleAgent, ID: "web-01"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.NetConn().Close()
	b, err := batch.NewBuilder(batch.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var seq uint64
	for range batches {
		for _, src := range srcs {
			var lines []string
			start := ends[src]
			pos := start
			for range perBatch {
				l := fmt.Sprintf("src%d-byte%06d", src, pos)
				lines = append(lines, l)
				b.Add(time.Now().UnixNano(), []byte(l))
				pos += int64(len(l)) + 1
			}
			raw, err := b.Build(nil, batch.Meta{Agent: "web-01", Topic: topic, Path: "/var/log/app.log", SourceID: src, RangeStart: start, RangeEnd: pos})
			if err != nil {
				t.Fatal(err)
			}
			seq++
			if err := c.WriteFrame(wire.TypeProduce, wire.EncodeProduceHeader(nil, seq), raw); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			c.NetConn().SetReadDeadline(time.Now().Add(wait))
			typ, p, err := c.ReadFrame()
			if err != nil || typ != wire.TypeProduceAck {
				t.Fatalf("ack: %s, %v", typ, err)
			}
			var ack wire.ProduceAck
			if err := ack.Decode(p); err != nil || ack.Status != wire.AckAppended {
				t.Fatalf("ack %+v, %v", ack, err)
			}
			part := int(ack.Partition)
			if want[part] == nil {
				want[part] = map[int64]string{}
			}
			for i, l := range lines {
				want[part][ack.BaseOffset+int64(i)] = l
			}
			ends[src] = pos
		}
	}
}

// checkReal checks that dir holds exactly want, each record once in
// offset order.
func checkReal(t *testing.T, dir string, want map[int]map[int64]string) {
	t.Helper()
	for part, recs := range want {
		got := waitPublished(t, file.OSFS{}, osRead, dir, aggID, "app", part, int64(len(recs)))
		if len(got) != len(recs) {
			t.Fatalf("partition %d: %d records, want %d", part, len(got), len(recs))
		}
		for i, r := range got {
			if r.Offset != int64(i) || r.Line != recs[r.Offset] {
				t.Fatalf("partition %d record %d: offset %d %q, want %q", part, i, r.Offset, r.Line, recs[int64(i)])
			}
		}
	}
}

// TestAgainstRealAggregator: agents produce into a real aggregator, the
// file sink consumes it while the aggregator restarts, and every record is
// published exactly once, with the commits stored by the aggregator.
func TestAgainstRealAggregator(t *testing.T) {
	aggDir, dir := t.TempDir(), t.TempDir()
	a := startReal(t, aggDir, "127.0.0.1:0")
	addr := a.Addr()
	srcs := []uint64{1, 2, 3, 4, 5}
	ends := map[uint64]int64{}
	want := map[int]map[int64]string{}
	produce(t, addr, "app", srcs, 3, 7, ends, want)
	if len(want) != 2 {
		t.Fatalf("records in %d partitions, want 2 (change the source ids)", len(want))
	}

	log, lg := logger(t)
	opts := sinks.Options{Aggregators: []string{addr}, Topics: []string{"app"}, Logger: lg}
	r := start(t, opts, fileSink(t, file.Options{Dir: dir, Logger: lg}))
	checkReal(t, dir, want)

	// The aggregator restarts on the same address while the sink runs.
	a.stop()
	a = startReal(t, aggDir, addr)
	produce(t, addr, "app", srcs, 2, 5, ends, want)
	checkReal(t, dir, want)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// The sink restarts: nothing is written twice.
	produce(t, addr, "app", srcs[:2], 1, 3, ends, want)
	r = start(t, opts, fileSink(t, file.Options{Dir: dir, Logger: lg}))
	checkReal(t, dir, want)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	c, err := sinks.Dial(context.Background(), addr, sinkName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	committed, err := c.Committed(context.Background(), sinkName, "app")
	if err != nil {
		t.Fatal(err)
	}
	for part, recs := range want {
		if committed[part].Offset != int64(len(recs)) {
			t.Errorf("partition %d: committed %d, want %d", part, committed[part], len(recs))
		}
	}
	if e := log.Find(slog.LevelWarn, "lost"); len(e) > 0 {
		t.Fatalf("unexpected warnings: %+v", e)
	}
}
