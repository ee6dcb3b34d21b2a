package aggregator

import (
	"slices"
	"testing"
	"time"

	"logship/internal/wire"
)

func (cc *consumerClient) status() wire.Status {
	cc.t.Helper()
	cc.req++
	p, err := cc.call(wire.TypeStatus, (&wire.StatusRequest{Req: cc.req}).Encode(nil), wire.TypeStatusResult)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.StatusResult
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	return r.Status
}

func (cc *consumerClient) offsetForTime(topic string, part uint32, at time.Time) wire.OffsetTime {
	cc.t.Helper()
	cc.req++
	m := wire.OffsetForTime{Req: cc.req, Topic: topic, Partition: part, TimeMs: at.UnixMilli()}
	p, err := cc.call(wire.TypeOffsetForTime, m.Encode(nil), wire.TypeOffsetTime)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.OffsetTime
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	return r
}

// TestStatus: the status names the connected agent and its topics, every
// partition with its offsets, and every sink's commit with its lag.
func TestStatus(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-1")
	s := src{"web-1", "app", 7}
	ack := a.produce(mkBatch(t, s, 0, 10, "one", "two", "three"))
	expect(t, ack, wire.AckAppended, 10)
	ack2 := a.produce(mkBatch(t, s, 10, 20, "four"))
	expect(t, ack2, wire.AckAppended, 20)
	cc := dialConsumer(t, ts.Addr())
	if r := cc.commit("hdfs", "app", ack.Partition, 1); r.Status != wire.CommitOK {
		t.Fatalf("%+v", r)
	}

	st := cc.status()
	if st.Version != wire.StatusVersion || st.Aggregator != "agg-1" {
		t.Fatalf("%+v", st)
	}
	if len(st.Agents) != 1 || st.Agents[0].ID != "web-1" || !slices.Equal(st.Agents[0].Topics, []string{"app"}) ||
		st.Agents[0].Batches != 2 || st.Agents[0].Bytes == 0 || st.Agents[0].RawBytes == 0 {
		t.Fatalf("agents %+v", st.Agents)
	}
	var part *wire.PartitionStatus
	for i, p := range st.Partitions {
		if p.Topic == "app" && p.Partition == int(ack.Partition) {
			part = &st.Partitions[i]
		}
	}
	if part == nil || part.StartOffset != 0 || part.EndOffset != 4 || part.Bytes == 0 || part.Segments != 1 ||
		part.Aggregator != "agg-1" || part.LastTime == nil {
		t.Fatalf("partitions %+v", st.Partitions)
	}
	if len(st.Sinks) != 1 {
		t.Fatalf("sinks %+v", st.Sinks)
	}
	sk := st.Sinks[0]
	if sk.Sink != "hdfs" || sk.Committed != 1 || sk.Lag != 3 || sk.LagBytes == 0 || sk.CommittedTime == nil {
		t.Fatalf("sink %+v", sk)
	}

	if st.Agents[0].OpenFiles != -1 || st.Agents[0].LagBytes != -1 {
		t.Fatalf("file lag before any report: %+v", st.Agents[0])
	}
	// The agent's report of its files shows in the status.
	rep := wire.AgentReport{Files: 2, LagBytes: 600, Lagging: []wire.FileLag{{Topic: "app", Path: "/var/log/a.log", Size: 1000, Acked: 400}}}
	if err := a.c.WriteFrame(wire.TypeAgentReport, rep.Encode(nil)); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Flush(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		ag := cc.status().Agents
		return len(ag) == 1 && ag[0].OpenFiles == 2 && ag[0].LagBytes == 600 && len(ag[0].Lagging) == 1 && ag[0].Lagging[0] == rep.Lagging[0]
	})

	// Gone agents leave the list.
	a.close()
	waitUntil(t, func() bool { return len(cc.status().Agents) == 0 })
}

// TestOffsetForTime: the first offset appended at or after a time; the end
// when nothing is that recent; a clear status for an unknown partition.
func TestOffsetForTime(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	a := dialAgent(t, ts.Addr(), "web-1")
	s := src{"web-1", "app", 7}
	ack := a.produce(mkBatch(t, s, 0, 10, "a", "b"))
	cc := dialConsumer(t, ts.Addr())
	if r := cc.offsetForTime("app", ack.Partition, time.Unix(0, 0)); r.Status != wire.TimeOK || r.Offset != 0 {
		t.Fatalf("epoch: %+v", r)
	}
	if r := cc.offsetForTime("app", ack.Partition, time.Now().Add(time.Hour)); r.Status != wire.TimeOK || r.Offset != 2 {
		t.Fatalf("future: %+v", r)
	}
	if r := cc.offsetForTime("nope", 0, time.Now()); r.Status != wire.TimeUnknownPartition {
		t.Fatalf("unknown: %+v", r)
	}
}
