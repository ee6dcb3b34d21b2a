package aggregator

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"logship/internal/wire"
)

// TestReaderBoundsReadAhead: while the appender does not take frames (a
// slow disk), an agent connection's reader reads ahead no more than its
// queue's bound (readAheadBytes plus the frame that crossed it), then
// stops reading; the agent's further batches wait in the network.
func TestReaderBoundsReadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl, sv := net.Pipe()
		s := src{"web-1", "app", 1}
		const size = 100 << 10
		a := &agentConn{s: &Server{}, c: wire.NewConn(sv, 0), nc: sv, id: s.agent,
			in: newQueue[inFrame](readAheadFrames, readAheadBytes, 1)}
		read := make(chan struct{})
		go func() {
			defer close(read)
			a.readAhead()
		}()
		const frames = 40 // 4 MiB: far more than the bound
		var sent atomic.Int64
		go func() { // the agent
			for i := range frames {
				if _, err := cl.Write(produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), size)); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		synctest.Wait() // the reader waits for room, the agent to send
		a.in.mu.Lock()
		n, weight := a.in.n, a.in.weight
		a.in.mu.Unlock()
		// Each frame is in a pooled buffer of 128 KiB.
		if weight < readAheadBytes || weight > readAheadBytes+128<<10 {
			t.Fatalf("read ahead %d bytes of buffers in %d frames, want at least %d and at most one buffer more", weight, n, readAheadBytes)
		}
		if sent := sent.Load(); sent > int64(n)+1 {
			t.Fatalf("%d frames sent, %d queued: the reader went on reading", sent, n)
		}
		cl.Close()
		// The appender's part: take every frame, give its buffer back.
		for {
			it, ok := a.in.get()
			if !ok {
				break
			}
			it.f.Release()
			a.in.done(0)
		}
		<-read
	})
}

// agentModes are the two ways an agent connection runs (pipelineAgent):
// pipelined, or read and appended on one goroutine. A test makes its
// connection run one way or the other by opening idle agent connections
// before it (openIdle).
var agentModes = []struct {
	name string
	idle int
}{{"pipelined", 0}, {"one-goroutine", runtime.GOMAXPROCS(0) / 2}}

// openIdle opens n agent connections that only exchange a Heartbeat, so
// that the server counts them open when it returns, and checks that the
// next agent connection will be pipelined or not, as wanted.
func openIdle(t *testing.T, addr string, n int, pipelined bool) {
	t.Helper()
	if pipelineAgent(int64(n+1)) != pipelined {
		t.Skipf("GOMAXPROCS %d: no such connection", runtime.GOMAXPROCS(0))
	}
	for i := range n {
		a := dialAgent(t, addr, fmt.Sprintf("idle-%d", i))
		if err := a.c.WriteFrame(wire.TypeHeartbeat, (&wire.Heartbeat{Nonce: 7}).Encode(nil)); err != nil {
			t.Fatal(err)
		}
		if err := a.c.Flush(); err != nil {
			t.Fatal(err)
		}
		if typ, _, err := a.c.ReadFrame(); err != nil || typ != wire.TypeHeartbeat {
			t.Fatalf("idle agent: %s, %v", typ, err)
		}
	}
}

// TestBadFrameAfterPipelinedBatches: when a frame that closes the
// connection (a read error or a bad batch) comes behind batches the agent
// pipelined, those batches are stored and acked, in order, before the
// Error frame; nothing after it is stored.
func TestBadFrameAfterPipelinedBatches(t *testing.T) {
	s := src{"web-1", "app", 1}
	const good = 40
	cases := []struct {
		name   string
		bad    func(t *testing.T) []byte
		reason string
		code   wire.ErrorCode
	}{
		{name: "bad-crc", bad: func(t *testing.T) []byte {
			f := produceFrame(t, s, good+1, good*10, good*10+10, 2<<10)
			f[len(f)-1] ^= 0x40
			return f
		}, reason: "checksum mismatch", code: wire.CodeProtocol},
		{name: "other-agent", bad: func(t *testing.T) []byte {
			return produceFrame(t, src{"web-2", "app", 1}, good+1, 0, 10, 2<<10)
		}, reason: "on the connection of agent", code: wire.CodeBadRequest},
		{name: "too-large", bad: func(t *testing.T) []byte {
			return []byte{0xff, 0xff, 0xff, 0xf0, byte(wire.TypeProduce)}
		}, reason: "frame too large", code: wire.CodeProtocol},
		{name: "truncated", bad: func(t *testing.T) []byte {
			return produceFrame(t, s, good+1, good*10, good*10+10, 2<<10)[:100]
		}, reason: "truncated frame", code: wire.CodeProtocol},
	}
	for _, mode := range agentModes {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				ts := start(t, t.TempDir(), nil)
				openIdle(t, ts.Addr(), mode.idle, mode.idle == 0)
				a := dialAgent(t, ts.Addr(), s.agent)
				var out []byte
				for i := range good {
					// Large and small batches: pooled buffers and copies.
					size := 2 << 10
					if i%2 == 0 {
						size = 64 << 10
					}
					out = append(out, produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), size)...)
				}
				// Behind the bad frame, a good one that must not be stored.
				out = append(out, tc.bad(t)...)
				if tc.name != "truncated" {
					out = append(out, produceFrame(t, src{s.agent, "app", 2}, good+2, 0, 10, 2<<10)...)
				}
				werr := writeInBackground(a.c.NetConn(), out, tc.name == "truncated")
				for i := range good {
					ack, err := a.readAck()
					if err != nil {
						t.Fatalf("ack %d: %v", i+1, err)
					}
					if ack.Seq != uint64(i+1) || ack.Status != wire.AckAppended || ack.StoredEnd != int64(i*10+10) {
						t.Fatalf("ack %d: %+v", i+1, ack)
					}
				}
				_, err := a.readAck()
				var re *wire.RemoteError
				if !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(re.Message, tc.reason) {
					t.Fatalf("after the acks: %v, want an Error frame (%s) saying %q", err, tc.code, tc.reason)
				}
				if _, _, err := a.c.ReadFrame(); !errors.Is(err, io.EOF) {
					t.Fatalf("after the Error frame: %v, want EOF", err)
				}
				<-werr // the server drained what it did not read: no reset
				if st := ts.Stats(); st.Appended != good {
					t.Fatalf("%d batches stored, want %d", st.Appended, good)
				}
			})
		}
	}
}

// TestFailedAppendDropsPipelined: when an append fails while the agent has
// many batches in flight behind it (some already read ahead, some still in
// the network), the connection acks the failed one Failed, acks and stores
// none of the others, and ends once the agent closes.
func TestFailedAppendDropsPipelined(t *testing.T) {
	for _, mode := range agentModes {
		t.Run(mode.name, func(t *testing.T) { testFailedAppendDropsPipelined(t, mode.idle) })
	}
}

func testFailedAppendDropsPipelined(t *testing.T, idle int) {
	dir := t.TempDir()
	ts := start(t, dir, func(o *Options) { o.Partitions = 1; o.SegmentBytes = 64 << 10 })
	openIdle(t, ts.Addr(), idle, idle == 0)
	s := src{agent: "web-1", topic: "app", id: 7}
	a := dialAgent(t, ts.Addr(), s.agent)
	appendFirst(t, a, s)
	unblock := blockFirstRoll(t, dir)

	var out []byte
	const behind = 60
	for i := range behind + 1 { // the first one needs a roll, and fails
		out = append(out, produceFrame(t, s, uint64(i+2), int64(10+i*10), int64(20+i*10), 70<<10)...)
	}
	werr := writeInBackground(a.c.NetConn(), out, true)
	var acks []wire.ProduceAck
	for {
		ack, err := a.readAck()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].Seq != 2 || acks[0].Status != wire.AckFailed {
		t.Fatalf("acks %+v; want only seq 2, Failed", acks)
	}
	if st := ts.Stats(); st.Appended != 1 {
		t.Fatalf("%d batches stored, want only the first", st.Appended)
	}
	unblock()
	cc := dialConsumer(t, ts.Addr())
	if got := cc.readAll("app", 0); len(got) != 1 || got[0].h.RangeEnd != 10 {
		t.Fatalf("stored %d batches", len(got))
	}
}
