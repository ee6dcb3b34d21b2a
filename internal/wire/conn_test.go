package wire

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

// pipe returns the two ends of a TCP connection on 127.0.0.1.
func pipe(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func TestIdleTimeout(t *testing.T) {
	_, s := pipe(t)
	c := NewConn(s, 0)
	c.SetReadTimeouts(50*time.Millisecond, time.Second)
	start := time.Now()
	_, _, err := c.ReadFrame()
	if !errors.Is(err, ErrIdle) || errors.Is(err, ErrSlowFrame) {
		t.Fatalf("got %v, want ErrIdle", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// TestSlowFrame: a peer that trickles a frame a byte at a time is cut
// when the frame is not whole within the frame timeout, even though each
// byte arrives well within the idle timeout.
func TestSlowFrame(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	c.SetReadTimeouts(time.Second, 200*time.Millisecond)
	fr := binary.BigEndian.AppendUint32(nil, 101)
	fr = append(fr, byte(TypeProduce))
	fr = append(fr, make([]byte, 100)...)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, b := range fr {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // the slow client's pace
			}
			if _, err := cl.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	_, _, err := c.ReadFrame()
	close(stop)
	<-done
	if !errors.Is(err, ErrSlowFrame) {
		t.Fatalf("got %v, want ErrSlowFrame", err)
	}
}

// TestTimeoutsAllowSteadyFrames: frames that arrive whole are read however
// many there are, and the deadlines do not leak into the next frame.
func TestTimeoutsAllowSteadyFrames(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	c.SetReadTimeouts(time.Second, time.Second)
	w := NewConn(cl, 0)
	for i := range 100 {
		if err := w.WriteFrame(TypeHeartbeat, (&Heartbeat{Nonce: uint64(i)}).Encode(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		typ, p, err := c.ReadFrame()
		var hb Heartbeat
		if err != nil || typ != TypeHeartbeat || hb.Decode(p) != nil || hb.Nonce != uint64(i) {
			t.Fatalf("frame %d: %s %v %+v", i, typ, err, hb)
		}
	}
}

// TestInterrupt: Interrupt wakes a blocked ReadFrame, and deadlines set
// afterwards cannot undo it.
func TestInterrupt(t *testing.T) {
	_, s := pipe(t)
	c := NewConn(s, 0)
	c.SetReadTimeouts(time.Hour, time.Hour)
	if err := interruptedRead(t, c); err == nil {
		t.Fatal("ReadFrame returned a frame")
	}
	if _, _, err := c.ReadFrame(); err == nil || !c.Interrupted() {
		t.Fatalf("read after Interrupt: %v", err)
	}
}

// interruptedRead starts a ReadFrame, interrupts c and returns the
// ReadFrame's error.
func interruptedRead(t *testing.T, c *Conn) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrame()
		errc <- err
	}()
	c.Interrupt()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrame not woken")
		return nil
	}
}

// TestLargeFrameBufferReleased: after a large frame, the next ReadFrame
// gives its buffer back before it waits, so an idle connection holds only
// its small buffers.
func TestLargeFrameBufferReleased(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	w := NewConn(cl, 0)
	big := make([]byte, 4<<20)
	big[len(big)-1] = 7
	werr := make(chan error, 1)
	go func() {
		err := w.WriteFrame(TypeProduce, big)
		if err == nil {
			err = w.Flush()
		}
		werr <- err
	}()
	_, p, err := c.ReadFrame()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if err != nil || len(p) != len(big) || p[len(p)-1] != 7 {
		t.Fatalf("read %d bytes: %v", len(p), err)
	}
	if c.big == nil {
		t.Fatal("a 4 MiB frame did not use a pooled buffer")
	}
	c.SetReadTimeouts(10*time.Millisecond, 0)
	if _, _, err := c.ReadFrame(); !errors.Is(err, ErrIdle) {
		t.Fatalf("got %v", err)
	}
	if c.big != nil || cap(c.rbuf) > smallFrame {
		t.Fatalf("idle connection holds %d + %d bytes", cap(c.rbuf), len(*c.big))
	}
	// Small frames do not touch the pool.
	w.WriteFrame(TypeHeartbeat, (&Heartbeat{}).Encode(nil))
	w.Flush()
	c.SetReadTimeouts(0, 0)
	if _, _, err := c.ReadFrame(); err != nil || c.big != nil {
		t.Fatalf("small frame: %v, big %v", err, c.big != nil)
	}
}

func TestPoolClasses(t *testing.T) {
	for _, n := range []int{smallFrame + 1, 32 << 10, 32<<10 + 1, 1 << 20, 64 << 20} {
		b := getBuf(n)
		if len(*b) < n || len(*b) > 2*n {
			t.Fatalf("getBuf(%d): %d bytes", n, len(*b))
		}
		putBuf(b)
	}
	if b := getBuf(64<<20 + 1); len(*b) != 64<<20+1 {
		t.Fatalf("unpooled: %d", len(*b))
	}
}
