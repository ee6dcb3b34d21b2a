package wire

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestReadOwnedFrame: a frame read by ReadOwnedFrame stays intact while
// later frames are read, whether it was large (the pooled buffer is handed
// over) or small (copied out of the Conn's own buffer), and the Conn keeps
// no pooled buffer between frames.
func TestReadOwnedFrame(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	w := NewConn(cl, 0)
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	small := []byte("small payload")
	werr := make(chan error, 1)
	go func() {
		for _, f := range []struct {
			t Type
			p []byte
		}{{TypeProduce, big}, {TypeProduce, small}, {TypeHeartbeat, nil}, {TypeProduce, bytes.Repeat([]byte{0xff}, len(big))}, {TypeProduce, []byte("other bytes!!")}} {
			if err := w.WriteFrame(f.t, f.p); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.Flush()
	}()
	var got []Frame
	for range 5 {
		f, err := c.ReadOwnedFrame()
		if err != nil {
			t.Fatal(err)
		}
		if c.big != nil {
			t.Fatal("the Conn kept the pooled buffer it handed over")
		}
		got = append(got, f)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if got[0].Type != TypeProduce || !bytes.Equal(got[0].Payload, big) {
		t.Fatalf("large frame changed by later reads: %d bytes", len(got[0].Payload))
	}
	if !bytes.Equal(got[1].Payload, small) {
		t.Fatalf("small frame changed by later reads: %q", got[1].Payload)
	}
	if got[2].Type != TypeHeartbeat || len(got[2].Payload) != 0 {
		t.Fatalf("empty frame: %+v", got[2])
	}
	for i := range got {
		got[i].Release()
		got[i].Release() // twice is harmless
		if got[i].Payload != nil {
			t.Fatalf("frame %d: payload kept after Release", i)
		}
	}
}

// TestLimitReads: LimitReads wakes a blocked read and bounds every later
// one, whatever timeouts the reader sets; it only ever moves earlier, and
// it does not mark the Conn interrupted.
func TestLimitReads(t *testing.T) {
	t.Run("wakes-blocked-read", func(t *testing.T) {
		_, s := pipe(t)
		c := NewConn(s, 0)
		c.SetReadTimeouts(time.Minute, time.Minute)
		errc := make(chan error, 1)
		go func() {
			_, _, err := c.ReadFrame()
			errc <- err
		}()
		c.LimitReads(time.Now())
		select {
		case err := <-errc:
			if !errors.Is(err, ErrIdle) {
				t.Fatalf("got %v, want a timeout (ErrIdle)", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked read was not woken")
		}
		// Later reads fail at once, even with new timeouts or none.
		for _, d := range []time.Duration{time.Minute, 0} {
			c.SetReadTimeouts(d, d)
			if _, _, err := c.ReadFrame(); err == nil {
				t.Fatalf("timeouts %s: a read after the limit succeeded", d)
			}
		}
		if c.Interrupted() {
			t.Fatal("LimitReads marked the Conn interrupted")
		}
	})
	t.Run("never-later", func(t *testing.T) {
		_, s := pipe(t)
		c := NewConn(s, 0)
		c.LimitReads(time.Now().Add(-time.Second))
		c.LimitReads(time.Now().Add(time.Hour))
		c.SetReadTimeouts(time.Minute, time.Minute)
		if _, _, err := c.ReadFrame(); !errors.Is(err, ErrIdle) {
			t.Fatalf("got %v, want a timeout", err)
		}
	})
	t.Run("frames-before-the-limit", func(t *testing.T) {
		cl, s := pipe(t)
		c := NewConn(s, 0)
		w := NewConn(cl, 0)
		c.LimitReads(time.Now().Add(time.Hour))
		c.SetReadTimeouts(0, 0)
		w.WriteFrame(TypeHeartbeat, nil)
		w.Flush()
		if typ, _, err := c.ReadFrame(); err != nil || typ != TypeHeartbeat {
			t.Fatalf("got %s, %v", typ, err)
		}
	})
}
