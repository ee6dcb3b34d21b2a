package aggregator

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"logship/internal/wire"
)

// TestFailedAppendDrainsPastReadAheadBadFrame: after a Failed append the
// connection reads and drops what the agent still sends until the agent
// closes (doc.go "Agents"), so that the agent's pipelined bytes are not
// answered with a reset that can destroy the Failed ack. In a pipelined
// connection, a frame the reader checked ahead of the failed append (here:
// one of an unexpected type) stops the reader before it sees the failure;
// the appender then drains (agentConn.drain).
func TestFailedAppendDrainsPastReadAheadBadFrame(t *testing.T) {
	for _, mode := range agentModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			ts := start(t, dir, func(o *Options) { o.Partitions = 1; o.SegmentBytes = 64 << 10 })
			openIdle(t, ts.Addr(), mode.idle, mode.idle == 0)
			s := src{agent: "web-1", topic: "app", id: 7}
			a := dialAgent(t, ts.Addr(), s.agent)
			appendFirst(t, a, s)
			blockFirstRoll(t, dir)

			// The batch whose append fails (it needs a roll), a frame the
			// aggregator refuses, then many batches in flight.
			out := produceFrame(t, s, 2, 10, 20, 70<<10)
			bad := make([]byte, 5, 9)
			binary.BigEndian.PutUint32(bad, 5)
			bad[4] = byte(wire.TypeFetch)
			out = append(out, append(bad, 0, 0, 0, 0)...)
			for i := range 60 {
				out = append(out, produceFrame(t, s, uint64(i+3), int64(20+i*10), int64(30+i*10), 70<<10)...)
			}
			sendAndCheckDrained(t, ts, a, out)
		})
	}
}

// TestFailedAppendDrainsPastOversizedFrame: after a Failed append the
// connection reads and drops what the agent still sends until the agent
// closes (doc.go "Agents": at most failedDrain), so that the agent's
// pipelined bytes are not answered with a reset that can destroy the
// Failed ack. Here the agent pipelined, behind the failing batch, a
// Produce larger than the max frame (its payload follows its header, as
// an agent that sends one does) and then more batches. The reader (or the
// one goroutine gathering) stops at the oversized header before it sees
// the failure; drain must then still read the agent's bytes until it
// closes. drain once read them as frames: the oversized frame's payload
// was taken for frame headers, the first "header" was refused and drain
// stopped at once, so the connection was closed with the agent's bytes
// unread and the kernel answered with a reset.
func TestFailedAppendDrainsPastOversizedFrame(t *testing.T) {
	for _, mode := range agentModes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			ts := start(t, dir, func(o *Options) {
				o.Partitions = 1
				o.SegmentBytes = 32 << 10
				o.MaxFrameBytes = 64 << 10
			})
			openIdle(t, ts.Addr(), mode.idle, mode.idle == 0)
			s := src{agent: "web-1", topic: "app", id: 7}
			a := dialAgent(t, ts.Addr(), s.agent)
			appendFirst(t, a, s)
			blockFirstRoll(t, dir)

			// The batch whose append fails (it needs a roll), a Produce over
			// the max frame size with its payload, then 32 MiB of batches
			// in flight: more than the loopback socket buffers hold, so the
			// agent is still writing when the server closes.
			out := produceFrame(t, s, 2, 10, 20, 40<<10)
			out = append(out, produceFrame(t, s, 3, 20, 30, 100<<10)...)
			next := produceFrame(t, s, 4, 30, 40, 40<<10)
			for len(out) < 32<<20 {
				out = append(out, next...)
			}
			sendAndCheckDrained(t, ts, a, out)
		})
	}
}

// sendAndCheckDrained sends out (the batch whose append fails, seq 2, then
// what the agent pipelined behind it) and closes the agent's side, then
// checks that the aggregator drained it all (the write did not fail), that
// the one ack is the Failed one, read without a reset, and that only the
// batch before was stored.
func sendAndCheckDrained(t *testing.T, ts *testServer, a *agentClient, out []byte) {
	t.Helper()
	werr := writeInBackground(a.c.NetConn(), out, true)
	var acks []wire.ProduceAck
	var rerr error
	for {
		ack, err := a.readAck()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
		acks = append(acks, ack)
	}
	if err := <-werr; err != nil {
		t.Errorf("the agent's pipelined bytes were not drained after the Failed ack: write: %v", err)
	}
	if rerr != nil {
		t.Errorf("reading the acks: %v", rerr)
	}
	if len(acks) != 1 || acks[0].Seq != 2 || acks[0].Status != wire.AckFailed {
		t.Errorf("acks %+v; want only seq 2, Failed", acks)
	}
	if st := ts.Stats(); st.Appended != 1 {
		t.Errorf("%d batches stored, want only the first", st.Appended)
	}
}
