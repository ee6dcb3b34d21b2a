package aggregator

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"logship/internal/wire"
)

// gatherRig starts a server whose next agent connection is not pipelined
// and whose agent "web-1" does not read its first frame until released,
// so that everything the test wrote is in its socket and the connection
// gathers it. peak is the most the server counted gathered before a read.
type gatherRig struct {
	ts      *testServer
	dir     string
	release chan struct{}
	peak    atomic.Int64
}

func newGatherRig(t *testing.T, mod func(*Options)) *gatherRig {
	t.Helper()
	r := &gatherRig{release: make(chan struct{})}
	r.dir = t.TempDir()
	r.ts = start(t, r.dir, func(o *Options) {
		o.Partitions = 1
		if mod != nil {
			mod(o)
		}
	})
	var once sync.Once
	r.ts.Server.beforeTakeHook = func(agent string) {
		if agent != "web-1" {
			return
		}
		once.Do(func() { <-r.release })
		if g := r.ts.Server.gathered.Load(); g > r.peak.Load() {
			r.peak.Store(g)
		}
	}
	openIdle(t, r.ts.Addr(), agentModes[1].idle, false)
	return r
}

// TestGatheredCountedOutOnEveryEnd: whatever ends a connection that
// gathered frames (a truncated frame, a bad batch, a failed append, a slow
// frame, a reset, shutdown), the frames it gathered are handled in order
// (acked up to the bad one) and the server-wide count goes back to 0.
func TestGatheredCountedOutOnEveryEnd(t *testing.T) {
	s := src{agent: "web-1", topic: "app", id: 1}
	const good = 8
	frames := func(t *testing.T) []byte {
		var out []byte
		for i := range good {
			out = append(out, produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), 20<<10)...)
		}
		return out
	}
	cases := []struct {
		name  string
		mod   func(*Options)
		tail  func(t *testing.T) []byte
		close string // how the agent's side ends: "write" (CloseWrite), "none", "reset"
		want  string // in the Error frame, or "" for none
	}{
		{name: "truncated", tail: func(t *testing.T) []byte {
			return produceFrame(t, s, good+1, good*10, good*10+10, 20<<10)[:100]
		}, close: "write", want: "truncated frame"},
		{name: "bad-crc", tail: func(t *testing.T) []byte {
			f := produceFrame(t, s, good+1, good*10, good*10+10, 20<<10)
			f[len(f)-1] ^= 1
			return f
		}, close: "none", want: "checksum"},
		{name: "slow-frame", mod: func(o *Options) { o.ReadTimeout = 200 * time.Millisecond }, tail: func(t *testing.T) []byte {
			return produceFrame(t, s, good+1, good*10, good*10+10, 20<<10)[:3] // a header read ahead, in part
		}, close: "none", want: "frame not complete"},
		{name: "eof", tail: func(t *testing.T) []byte { return nil }, close: "write"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newGatherRig(t, tc.mod)
			a := dialAgent(t, r.ts.Addr(), s.agent)
			out := append(frames(t), tc.tail(t)...)
			if _, err := a.c.NetConn().Write(out); err != nil {
				t.Fatal(err)
			}
			if tc.close == "write" {
				a.c.NetConn().(*net.TCPConn).CloseWrite()
			}
			close(r.release)
			for i := range good {
				ack, err := a.readAck()
				if err != nil || ack.Seq != uint64(i+1) || ack.Status != wire.AckAppended {
					t.Fatalf("ack %d: %+v, %v", i+1, ack, err)
				}
			}
			_, err := a.readAck()
			switch {
			case tc.want == "" && !errors.Is(err, io.EOF):
				t.Fatalf("after the acks: %v, want EOF", err)
			case tc.want != "" && !strings.Contains(errString(err), tc.want):
				t.Fatalf("after the acks: %v, want an Error frame saying %q", err, tc.want)
			}
			a.close()
			waitUntil(t, func() bool { return r.ts.Stats().OpenAgents == int64(agentModes[1].idle) })
			if r.peak.Load() == 0 {
				t.Fatal("the connection gathered nothing: the test proves nothing")
			}
			if g := r.ts.Server.gathered.Load(); g != 0 {
				t.Fatalf("server counts %d bytes gathered after the connection ended", g)
			}
			if st := r.ts.Stats(); st.Appended != good {
				t.Fatalf("%d stored, want %d", st.Appended, good)
			}
		})
	}
}

// TestGatheredCountedOutAfterFailedOrReset: the same after a failed
// append with frames gathered behind it, and after the agent resets the
// connection with frames gathered.
func TestGatheredCountedOutAfterFailedOrReset(t *testing.T) {
	s := src{agent: "web-1", topic: "app", id: 1}
	t.Run("failed", func(t *testing.T) {
		r := newGatherRig(t, func(o *Options) { o.SegmentBytes = 64 << 10 })
		a := dialAgent(t, r.ts.Addr(), s.agent)
		close(r.release)
		if _, err := a.c.NetConn().Write(produceFrame(t, s, 1, 0, 10, 2<<10)); err != nil {
			t.Fatal(err)
		}
		if ack, err := a.readAck(); err != nil || ack.Status != wire.AckAppended {
			t.Fatalf("%+v %v", ack, err)
		}
		unhold := holdAppends(t, r.ts, "app", 0)
		blockFirstRoll(t, r.dir)
		var out []byte
		for i := range 8 {
			out = append(out, produceFrame(t, s, uint64(i+2), int64(10+i*10), int64(20+i*10), 20<<10)...)
		}
		if _, err := a.c.NetConn().Write(out); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, func() bool { return waitingToAppend() == 1 })
		if r.ts.Server.gathered.Load() == 0 {
			t.Fatal("nothing gathered")
		}
		unhold()
		var acks []wire.ProduceAck
		for {
			ack, err := a.readAck()
			if err != nil {
				break
			}
			acks = append(acks, ack)
			if ack.Status == wire.AckFailed {
				a.close()
			}
		}
		waitUntil(t, func() bool { return r.ts.Stats().OpenAgents == int64(agentModes[1].idle) })
		if g := r.ts.Server.gathered.Load(); g != 0 {
			t.Fatalf("gathered %d after the connection ended", g)
		}
		if n := len(acks); n == 0 || acks[n-1].Status != wire.AckFailed {
			t.Fatalf("acks %+v", acks)
		}
		t.Logf("acks %+v", acks)
	})
	t.Run("reset", func(t *testing.T) {
		r := newGatherRig(t, nil)
		unhold := holdAppends(t, r.ts, "app", 0)
		a := dialAgent(t, r.ts.Addr(), s.agent)
		var out []byte
		for i := range 8 {
			out = append(out, produceFrame(t, s, uint64(i+1), int64(i*10), int64(10+i*10), 4<<10)...)
		}
		if _, err := a.c.NetConn().Write(out); err != nil {
			t.Fatal(err)
		}
		close(r.release)
		waitUntil(t, func() bool { return waitingToAppend() == 1 })
		if r.ts.Server.gathered.Load() == 0 {
			t.Fatal("nothing gathered")
		}
		a.c.NetConn().(*net.TCPConn).SetLinger(0)
		a.close()
		unhold()
		waitUntil(t, func() bool { return r.ts.Stats().OpenAgents == int64(agentModes[1].idle) })
		if g := r.ts.Server.gathered.Load(); g != 0 {
			t.Fatalf("gathered %d after the connection ended", g)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestShutdownWithGatheredFrames: a connection that is not pipelined
// holds gathered frames while its append waits (for another connection's
// on the partition) when the server is stopped: they are still appended
// and acked, in order, every acked batch is in the log after a restart,
// and the count goes back to 0.
func TestShutdownWithGatheredFrames(t *testing.T) {
	r := newGatherRig(t, nil)
	unhold := holdAppends(t, r.ts, "app", 0)
	s := src{agent: "web-1", topic: "app", id: 1}
	const n = 10
	var out []byte
	for i := range n {
		out = append(out, produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), 4<<10)...)
	}
	a := dialAgent(t, r.ts.Addr(), s.agent)
	if _, err := a.c.NetConn().Write(out); err != nil {
		t.Fatal(err)
	}
	close(r.release)
	waitUntil(t, func() bool { return waitingToAppend() == 1 })
	held := r.ts.Server.gathered.Load() / (32 << 10) // each in a 32 KiB buffer
	if held == 0 {
		t.Fatal("nothing gathered")
	}
	r.ts.cancel()
	waitUntil(t, func() bool { return r.ts.Server.stopAt.Load() != 0 })
	unhold()
	acked := 0
	for {
		ack, err := a.readAck()
		if err != nil {
			break
		}
		if ack.Seq != uint64(acked+1) || ack.Status != wire.AckAppended {
			t.Fatalf("ack %d: %+v", acked+1, ack)
		}
		acked++
	}
	t.Logf("gathered %d+1 frames, %d acked", held, acked)
	if int64(acked) < held+1 {
		t.Errorf("%d acked, want at least the %d gathered and the one handled", acked, held+1)
	}
	r.ts.stop(t)
	if g := r.ts.Server.gathered.Load(); g != 0 {
		t.Fatalf("gathered %d after shutdown", g)
	}
	ts := start(t, r.ts.opts.DataDir, nil)
	if got := dialConsumer(t, ts.Addr()).readAll("app", 0); len(got) < acked {
		t.Fatalf("%d stored, %d acked", len(got), acked)
	}
}
