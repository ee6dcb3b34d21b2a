package aggregator

import (
	"bytes"
	"strings"
	"testing"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// exactProduce is a Produce frame of s over [from, to) whose payload (seq
// and batch) is exactly n bytes: one record, sized to fit.
func exactProduce(t *testing.T, s src, seq uint64, from, to int64, n int) []byte {
	t.Helper()
	build := func(l, pad int) []byte {
		b, err := batch.NewBuilder(batch.None)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		b.Add(1, bytes.Repeat([]byte{'x'}, l))
		out, err := b.Build(nil, batch.Meta{Agent: s.agent, Topic: s.topic, Path: "/p" + strings.Repeat("p", pad), SourceID: s.id, RangeStart: from, RangeEnd: to})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	over := wire.ProduceHeaderSize + len(build(n/2, 0)) - n/2
	for pad := range 8 {
		l := n - over - pad
		if out := build(l, pad); wire.ProduceHeaderSize+len(out) == n {
			return produceFrameOf(t, out, seq)
		}
	}
	t.Fatalf("no batch makes a payload of %d bytes", n)
	return nil
}

// TestFrameSizeBoundaries: payloads at the Conn's own buffer size
// (smallFrame), just past it, and exactly at the max frame size are read
// whole in a burst (gathered or read ahead), in both modes; one byte over
// the max is refused after the others are acked.
func TestFrameSizeBoundaries(t *testing.T) {
	const maxFrame = 64 << 10
	sizes := []int{16<<10 - 1, 16 << 10, 16<<10 + 1, maxFrame - 1, maxFrame, 300, 16<<10 + 1, maxFrame, 16 << 10}
	for _, mode := range agentModes {
		t.Run(mode.name, func(t *testing.T) {
			ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1; o.MaxFrameBytes = maxFrame })
			openIdle(t, ts.Addr(), mode.idle, mode.idle == 0)
			s := src{agent: "web-1", topic: "app", id: 3}
			a := dialAgent(t, ts.Addr(), s.agent)
			var out []byte
			for i, n := range sizes {
				out = append(out, exactProduce(t, s, uint64(i+1), int64(i*10), int64(i*10+10), n)...)
			}
			out = append(out, exactProduce(t, s, uint64(len(sizes)+1), int64(len(sizes)*10), int64(len(sizes)*10+10), maxFrame+1)...)
			werr := writeInBackground(a.c.NetConn(), out, false)
			for i := range sizes {
				ack, err := a.readAck()
				if err != nil || ack.Seq != uint64(i+1) || ack.Status != wire.AckAppended {
					t.Fatalf("ack %d (payload %d): %+v %v", i+1, sizes[i], ack, err)
				}
			}
			if _, err := a.readAck(); !isRemote(err, wire.CodeProtocol) || !strings.Contains(err.Error(), "frame too large") {
				t.Fatalf("over the max: %v", err)
			}
			<-werr
			got := dialConsumer(t, ts.Addr()).readAll("app", 0)
			if len(got) != len(sizes) {
				t.Fatalf("%d stored", len(got))
			}
			for i, st := range got {
				if st.h.RangeStart != int64(i*10) || len(st.records) != 1 || strings.Trim(st.records[0], "x") != "" {
					t.Fatalf("batch %d: %+v", i, st.h)
				}
			}
		})
	}
}
