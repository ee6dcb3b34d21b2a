package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMessagesRoundTrip(t *testing.T) {
	type codec interface {
		Encode([]byte) []byte
		Decode([]byte) error
	}
	cases := []struct {
		name     string
		in, zero codec
	}{
		{"hello", &Hello{Version: 1, Role: RoleAgent, ID: "web-01", Token: "s3cret"}, &Hello{}},
		{"welcome", &Welcome{Version: 1, Aggregator: "agg-1", MaxFrame: 1 << 20}, &Welcome{}},
		{"ack", &ProduceAck{Seq: 9, Status: AckResync, StoredEnd: 1234, Partition: 3, BaseOffset: 77, Message: "m"}, &ProduceAck{}},
		{"fetch", &Fetch{Req: 1, Topic: "app", Partition: 2, Offset: 99, MaxBytes: 4096, MaxWaitMs: 500}, &Fetch{}},
		{"metadata", &Metadata{Req: 2, Topics: []string{"a", "b"}}, &Metadata{}},
		{"metadata-result", &MetadataResult{Req: 3, Aggregator: "x", Partitions: []PartitionInfo{{"app", 0, 1, 2}, {"web", 3, 4, 5}}}, &MetadataResult{}},
		{"commit", &OffsetCommit{Req: 4, Sink: "s", Topic: "t", Partition: 1, Offset: 10, Epoch: 2}, &OffsetCommit{}},
		{"reset", &OffsetReset{Req: 8, Sink: "s", Topic: "t", Partition: 1, Offset: 3}, &OffsetReset{}},
		{"committed", &OffsetCommitted{Req: 5, Status: 1, Message: "no"}, &OffsetCommitted{}},
		{"offset-fetch", &OffsetFetch{Req: 6, Sink: "s", Topic: "t"}, &OffsetFetch{}},
		{"offsets", &Offsets{Req: 7, Offsets: []PartitionOffset{{0, 5, 0}, {3, 9, 1}}}, &Offsets{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.in.Encode(nil)
			if err := c.zero.Decode(b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.in, c.zero) {
				t.Fatalf("got %+v, want %+v", c.zero, c.in)
			}
			for n := 0; n < len(b); n++ {
				if err := c.zero.Decode(b[:n]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated at %d: %v", n, err)
				}
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := NewConn(b, 0)
		h, err := s.ServerHandshake(time.Second)
		if err != nil {
			done <- err
			return
		}
		if h.ID != "web-01" || h.Role != RoleAgent || h.Version != Version {
			done <- errors.New("bad hello")
			return
		}
		done <- s.Accept(Welcome{Version: h.Version, Aggregator: "agg", MaxFrame: 1 << 20})
	}()
	c := NewConn(a, 0)
	w, err := c.ClientHandshake(Hello{Role: RoleAgent, ID: "web-01"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w.Aggregator != "agg" {
		t.Fatalf("%+v", w)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestGarbageIsRefused(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go a.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err := NewConn(b, 0).ServerHandshake(time.Second)
	if !errors.Is(err, ErrBadMagic) {
		t.Fatalf("got %v", err)
	}
}

// TestShortPreamble: what a client that sends less than a preamble gets
// called: a few bytes that cannot begin one are garbage (bad magic), the
// beginning of one cut short is a truncated preamble, nothing until the
// timeout is an idle connection, and a preamble begun and not finished in
// time is a slow one.
func TestShortPreamble(t *testing.T) {
	for _, tc := range []struct {
		name  string
		send  string
		close bool // else the timeout ends it
		want  error
	}{
		{"garbage", "garb", true, ErrBadMagic},
		{"one byte of garbage", "x", true, ErrBadMagic},
		{"cut short", "LSH", true, io.ErrUnexpectedEOF},
		{"silent", "", false, ErrIdle},
		{"slow", "LS", false, ErrSlowFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cl, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			sv, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sv.Close()
			cl.Write([]byte(tc.send))
			if tc.close {
				cl.Close()
			}
			_, err = NewConn(sv, 0).ServerHandshake(100 * time.Millisecond)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrBadMagic, ErrIdle, ErrSlowFrame} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("got %v: also %v", err, other)
				}
			}
		})
	}
}

// TestTLSClientOnPlainServer: a TLS client whose server closes during the
// TLS handshake (a plain aggregator refuses the ClientHello as a bad
// preamble) is told that the server may not have TLS enabled.
func TestTLSClientOnPlainServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		NewConn(c, 0).ServerHandshake(time.Second)
		c.Close()
	}()
	d := Dialer{TLS: &tls.Config{ServerName: "agg", MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second}
	_, _, err = d.Dial(context.Background(), ln.Addr().String(), Hello{Role: RoleAgent, ID: "a"})
	if err == nil || !strings.Contains(err.Error(), "does the aggregator have tls enabled?") {
		t.Fatalf("got %v, want a hint that the server may not use TLS", err)
	}
}

func TestVersionRefusedWithMessage(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		NewConn(b, 0).ServerHandshake(time.Second)
		b.Close()
	}()
	a.Write([]byte{'L', 'S', 'H', 'P', 9, 9, 0, 0})
	_, p, err := NewConn(a, 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var re *RemoteError
	if err := DecodeError(p); !errors.As(err, &re) || re.Code != CodeVersion {
		t.Fatalf("got %v", err)
	}
}

func TestFrameTooBig(t *testing.T) {
	var buf bytes.Buffer
	w := NewConn(fakeConn{&buf}, 0)
	w.WriteFrame(TypeProduce, make([]byte, 100))
	w.Flush()
	r := NewConn(fakeConn{&buf}, 50)
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooBig) {
		t.Fatalf("got %v", err)
	}
}

// TestBulkType: with a bulk type set, only frames of that type may exceed
// MaxControlFrame, and a larger frame of another type is refused from its
// header alone: its payload is never read.
func TestBulkType(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     Type
		size    int
		tooBig  bool
		maxSize int
	}{
		{"bulk type, large", TypeProduce, MaxControlFrame + 1, false, DefaultMaxFrame},
		{"bulk type, over max frame", TypeProduce, 2 * MaxControlFrame, true, MaxControlFrame + 10},
		{"control type at the bound", TypeHeartbeat, MaxControlFrame, false, DefaultMaxFrame},
		{"control type over the bound", TypeHeartbeat, MaxControlFrame + 1, true, DefaultMaxFrame},
		{"unknown type over the bound", 99, MaxControlFrame + 1, true, DefaultMaxFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := frame(tc.typ, make([]byte, tc.size))[:5]
			var in bytes.Buffer
			in.Write(hdr)
			if !tc.tooBig {
				in.Write(make([]byte, tc.size))
			}
			r := NewConn(fakeConn{&in}, tc.maxSize)
			r.SetBulkType(TypeProduce)
			typ, p, err := r.ReadFrame()
			switch {
			case tc.tooBig && !errors.Is(err, ErrFrameTooBig):
				t.Fatalf("got %s of %d bytes, %v; want ErrFrameTooBig", typ, len(p), err)
			case !tc.tooBig && (err != nil || typ != tc.typ || len(p) != tc.size):
				t.Fatalf("got %s of %d bytes, %v; want %s of %d bytes", typ, len(p), err, tc.typ, tc.size)
			}
		})
	}
}

type fakeConn struct{ rw io.ReadWriter }

func (f fakeConn) Read(p []byte) (int, error)       { return f.rw.Read(p) }
func (f fakeConn) Write(p []byte) (int, error)      { return f.rw.Write(p) }
func (f fakeConn) Close() error                     { return nil }
func (f fakeConn) LocalAddr() net.Addr              { return nil }
func (f fakeConn) RemoteAddr() net.Addr             { return nil }
func (f fakeConn) SetDeadline(time.Time) error      { return nil }
func (f fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f fakeConn) SetWriteDeadline(time.Time) error { return nil }

func frame(t Type, p []byte) []byte {
	var buf bytes.Buffer
	c := NewConn(fakeConn{&buf}, 0)
	c.WriteFrame(t, p)
	c.Flush()
	return buf.Bytes()
}

// TestRoleString: a role's name, or for one this version does not know its
// number alone, since messages name it as a role ("unknown role %s"; found
// in review: "unknown role role 7").
func TestRoleString(t *testing.T) {
	for _, tc := range []struct {
		r    Role
		want string
	}{
		{RoleAgent, "agent"},
		{RoleConsumer, "consumer"},
		{0, "0"},
		{7, "7"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.r.String(); got != tc.want {
				t.Errorf("Role(%d).String() = %q, want %q", uint8(tc.r), got, tc.want)
			}
		})
	}
}
