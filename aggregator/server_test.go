package aggregator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/logstore"
)

// TestBadClients sends each kind of bad input on its own connection while a
// healthy agent keeps shipping on another: only the bad connection is
// closed, its reason is logged with the remote address, and nothing of it
// is stored.
func TestBadClients(t *testing.T) {
	handshake := func(t *testing.T, addr string) *wire.Conn {
		c := dialAgent(t, addr, "bad-01")
		return c.c
	}
	frame := func(typ wire.Type, payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
		b = append(b, byte(typ))
		return append(b, payload...)
	}
	produce := func(b []byte) []byte {
		return frame(wire.TypeProduce, append(wire.EncodeProduceHeader(nil, 1), b...))
	}
	cases := []struct {
		name    string
		hello   bool // handshake first
		send    func(t *testing.T) []byte
		reason  string // in the WARN log line
		errCode wire.ErrorCode
	}{
		{name: "garbage", send: func(t *testing.T) []byte { return []byte("\x00\x01garbage bytes\xff\xfe") }, reason: "bad magic"},
		{name: "http", send: func(t *testing.T) []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, reason: "bad magic"},
		{name: "absurd-length", hello: true, send: func(t *testing.T) []byte { return []byte{0xff, 0xff, 0xff, 0xf0, byte(wire.TypeProduce)} },
			reason: "frame too large", errCode: wire.CodeProtocol},
		{name: "bad-crc", hello: true, send: func(t *testing.T) []byte {
			b := mkBatch(t, src{"bad-01", "app", 9}, 0, 10)
			b[len(b)-1] ^= 0x40
			return produce(b)
		}, reason: "checksum mismatch", errCode: wire.CodeProtocol},
		{name: "bad-topic", hello: true, send: func(t *testing.T) []byte {
			return produce(mkBatch(t, src{"bad-01", "../etc", 9}, 0, 10))
		}, reason: "invalid topic", errCode: wire.CodeBadRequest},
		{name: "other-agents-batch", hello: true, send: func(t *testing.T) []byte {
			return produce(mkBatch(t, src{"web-01", "app", 1}, 0, 10))
		}, reason: "on the connection of agent", errCode: wire.CodeBadRequest},
		{name: "unknown-type", hello: true, send: func(t *testing.T) []byte { return frame(99, []byte("hi")) },
			reason: "unexpected frame type 99", errCode: wire.CodeProtocol},
		{name: "consumer-frame-from-agent", hello: true, send: func(t *testing.T) []byte {
			f := wire.Fetch{Topic: "app"}
			return frame(wire.TypeFetch, f.Encode(nil))
		}, reason: "unexpected Fetch frame", errCode: wire.CodeProtocol},
		{name: "short-produce", hello: true, send: func(t *testing.T) []byte { return frame(wire.TypeProduce, []byte{1, 2, 3}) },
			reason: "payload too short", errCode: wire.CodeProtocol},
		{name: "truncated-frame", hello: true, send: func(t *testing.T) []byte {
			return produce(mkBatch(t, src{"bad-01", "app", 9}, 0, 10))[:40]
		}, reason: "truncated frame", errCode: wire.CodeProtocol},
	}
	ts := start(t, t.TempDir(), nil)
	good := dialAgent(t, ts.Addr(), "web-01")
	gs := src{"web-01", "app", 1}
	end := int64(0)
	ship := func() {
		t.Helper()
		expect(t, good.produce(mkBatch(t, gs, end, end+10)), wire.AckAppended, end+10)
		end += 10
	}
	ship()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var nc net.Conn
			var c *wire.Conn
			if tc.hello {
				c = handshake(t, ts.Addr())
				nc = c.NetConn()
			} else {
				var err error
				nc, err = net.Dial("tcp", ts.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				c = wire.NewConn(nc, 0)
			}
			local := nc.LocalAddr().String()
			if _, err := nc.Write(tc.send(t)); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated-frame" {
				nc.(*net.TCPConn).CloseWrite()
			}
			ship() // the healthy connection is unaffected
			// The server answers with an Error frame (after the
			// handshake) and closes.
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, p, err := c.ReadFrame()
			switch {
			case tc.errCode != 0:
				if err != nil || typ != wire.TypeError {
					t.Fatalf("got %s %v, want an Error frame", typ, err)
				}
				if rerr := wire.DecodeError(p); !isRemote(rerr, tc.errCode) || !strings.Contains(rerr.Error(), tc.reason) {
					t.Fatalf("error frame %v, want code %s and %q", rerr, tc.errCode, tc.reason)
				}
				_, _, err = c.ReadFrame()
				if !errors.Is(err, io.EOF) {
					t.Fatalf("after the Error frame: %v, want EOF", err)
				}
			case err == nil:
				t.Fatalf("got a %s frame, want the connection closed", typ)
			}
			// The server logged before closing, so the line is there.
			if lines := ts.logs.lines("level=WARN", "remote="+local, tc.reason); len(lines) != 1 {
				t.Fatalf("no WARN line with remote=%s and %q:\n%s", local, tc.reason, ts.logs)
			}
			ship()
		})
	}
	cc := dialConsumer(t, ts.Addr())
	parts := cc.readTopic("app")
	n := 0
	for _, batches := range parts {
		for _, b := range batches {
			if b.h.Agent != "web-01" {
				t.Fatalf("stored a batch of %q", b.h.Agent)
			}
			n++
		}
	}
	if n != int(end/10) {
		t.Fatalf("%d batches stored, want %d", n, end/10)
	}
	for _, pi := range cc.metadata() {
		if pi.Topic != "app" {
			t.Fatalf("topic %q exists", pi.Topic)
		}
	}
	st := ts.Stats()
	if st.Rejected["handshake"] != 2 || st.Rejected["protocol"] != 5 || st.Rejected["batch"] != 3 {
		t.Fatalf("rejected %v", st.Rejected)
	}
}

// TestControlFramesAreSmall: after the handshake only an agent's Produce
// may be larger than wire.MaxControlFrame. Any other frame announcing more
// is refused from its header, without waiting for (or taking a buffer
// for) its payload; and although the client goes on sending that payload,
// it reads the Error frame and then EOF, not a reset: the server drains
// what it does not read before it closes.
func TestControlFramesAreSmall(t *testing.T) {
	ts := start(t, t.TempDir(), func(o *Options) { o.ReadTimeout = time.Minute })
	const size = 15 << 20 // under the 16 MiB max frame, more than the sockets buffer
	for _, tc := range []struct {
		name string
		role wire.Role
		typ  wire.Type
	}{
		{"agent heartbeat", wire.RoleAgent, wire.TypeHeartbeat},
		{"agent unknown type", wire.RoleAgent, 99},
		{"consumer fetch", wire.RoleConsumer, wire.TypeFetch},
		{"consumer metadata", wire.RoleConsumer, wire.TypeMetadata},
		{"consumer produce", wire.RoleConsumer, wire.TypeProduce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := wire.DialContext(context.Background(), ts.Addr(), wire.Hello{Role: tc.role, ID: "small-01"}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			nc := c.NetConn()
			defer nc.Close()
			frame := binary.BigEndian.AppendUint32(nil, size+1)
			frame = append(frame, byte(tc.typ))
			frame = append(frame, make([]byte, size)...)
			wrote := make(chan error, 1)
			go func() { _, err := nc.Write(frame); wrote <- err }()

			nc.SetReadDeadline(time.Now().Add(10 * time.Second)) // far below the read timeout
			typ, p, err := c.ReadFrame()
			if err != nil || typ != wire.TypeError {
				t.Fatalf("got %s %v, want an Error frame", typ, err)
			}
			if rerr := wire.DecodeError(p); !isRemote(rerr, wire.CodeProtocol) || !strings.Contains(rerr.Error(), "frame too large") {
				t.Fatalf("error frame %v, want a protocol error saying frame too large", rerr)
			}
			if _, _, err := c.ReadFrame(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the Error frame: %v, want EOF", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("writing the payload: %v, want it drained", err)
			}
		})
	}
	if n := ts.Stats().Rejected["protocol"]; n != 5 {
		t.Fatalf("rejected protocol %d, want 5", n)
	}
}

// TestHelloRefused: a role the server does not know and an agent without a
// valid id are refused with an Error frame (whose message, where msg is
// set, is exactly that).
func TestHelloRefused(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	for _, tc := range []struct {
		name  string
		hello wire.Hello
		code  wire.ErrorCode
		msg   string
	}{
		{"role", wire.Hello{Role: 9, ID: "x"}, wire.CodeAuth, "unknown role 9"},
		{"agent-id", wire.Hello{Role: wire.RoleAgent, ID: "a b"}, wire.CodeBadRequest, ""},
		{"empty-agent-id", wire.Hello{Role: wire.RoleAgent}, wire.CodeBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := wire.DialContext(context.Background(), ts.Addr(), tc.hello, 5*time.Second)
			if !isRemote(err, tc.code) {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			var re *wire.RemoteError
			if errors.As(err, &re) && tc.msg != "" && re.Message != tc.msg {
				t.Errorf("message %q, want %q", re.Message, tc.msg)
			}
		})
	}
	if st := ts.Stats(); st.Rejected["hello"] != 3 {
		t.Fatalf("rejected %v", st.Rejected)
	}
}

// TestShutdownWhileSending stops the server while agents pipeline batches:
// every batch acked as Appended or Duplicate must be in the log after a
// restart, and Run must return nil.
func TestShutdownWhileSending(t *testing.T) {
	for _, fsync := range []logstore.FsyncPolicy{logstore.FsyncAlways, logstore.FsyncNever} {
		t.Run(fsync.String(), func(t *testing.T) {
			dir := t.TempDir()
			ts := start(t, dir, func(o *Options) { o.Fsync = fsync })
			const agents, window = 8, 16
			var mu sync.Mutex
			acked := map[sourceKey]int64{} // stored end acked per source
			var wg sync.WaitGroup
			started := make(chan struct{}, agents)
			for i := range agents {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := src{fmt.Sprintf("host-%d", i), "app", uint64(i)}
					a := dialAgent(t, ts.Addr(), s.agent)
					// Keep window batches in flight until the server goes.
					sendEnd, inFlight := int64(0), 0
					send := func() bool {
						seq := a.seq + 1
						a.seq = seq
						b := mkBatch(t, s, sendEnd, sendEnd+10)
						if err := a.c.WriteFrame(wire.TypeProduce, wire.EncodeProduceHeader(nil, seq), b); err != nil {
							return false
						}
						if a.c.Flush() != nil {
							return false
						}
						sendEnd += 10
						inFlight++
						return true
					}
					for range window {
						if !send() {
							return
						}
					}
					first := true
					for {
						ack, err := a.readAck()
						if err != nil {
							// The server closed the connection: after
							// the acks, with an Error frame saying why.
							if re := (*wire.RemoteError)(nil); !errors.As(err, &re) || re.Code != wire.CodeUnavailable {
								t.Errorf("agent %s: connection ended with %v, want an Error frame (unavailable: shutting down)", s.agent, err)
							}
							return
						}
						if ack.Status != wire.AckAppended {
							t.Errorf("ack %+v", ack)
							return
						}
						mu.Lock()
						acked[sourceKey{s.agent, s.id}] = ack.StoredEnd
						mu.Unlock()
						if first {
							started <- struct{}{}
							first = false
						}
						inFlight--
						if !send() {
							// Writes fail once the server is gone; keep
							// reading the acks it still sends.
							continue
						}
					}
				}()
			}
			for range agents {
				<-started
			}
			ts.stop(t)
			wg.Wait()

			ts = start(t, dir, nil)
			cc := dialConsumer(t, ts.Addr())
			stored := map[sourceKey]int64{}
			for _, batches := range cc.readTopic("app") {
				for _, b := range batches {
					k := sourceKey{b.h.Agent, b.h.SourceID}
					if b.h.RangeStart != stored[k] {
						t.Fatalf("source %v: [%d, %d) stored after %d", k, b.h.RangeStart, b.h.RangeEnd, stored[k])
					}
					stored[k] = b.h.RangeEnd
				}
			}
			for k, end := range acked {
				if stored[k] < end {
					t.Errorf("source %v: acked up to %d, stored up to %d", k, end, stored[k])
				}
			}
		})
	}
}

// TestRunReturnsOnCancelledContext: a server whose context is already done
// shuts down at once and releases its port and log.
func TestRunReturnsOnCancelledContext(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{ID: "agg-1", Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
	// The log is closed: it can be opened again.
	s, err = New(Options{ID: "agg-1", Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{ID: "bad id", Partitions: -1})
	if err == nil || !strings.Contains(err.Error(), "aggregator id") || !strings.Contains(err.Error(), "DataDir") || !strings.Contains(err.Error(), "Partitions") {
		t.Fatalf("got %v", err)
	}
}
