package wire

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestInterruptWakesReadv: Interrupt wakes a reader that waits in readv
// for the rest of a large payload.
func TestInterruptWakesReadv(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	if _, err := cl.Write(largeFrame(100 << 10)[:60<<10]); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrame()
		errc <- err
	}()
	// The reader waits for the rest once it has taken every byte sent.
	rc, err := s.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for queued := 1; queued > 0; {
		rc.Control(func(fd uintptr) { queued, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			t.Fatalf("ReadFrame returned before the frame was whole: %v", err)
		default:
		}
	}
	c.Interrupt()
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrame not woken")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
}

// TestFrameReady: FrameReady is true exactly when the next frame has come
// whole, whether its bytes are in the Conn's buffer, read ahead with a
// large payload, or in the socket's queue.
func TestFrameReady(t *testing.T) {
	cl, s := pipe(t)
	c := NewConn(s, 0)
	write := func(b []byte) { // a loopback write has reached the socket when it returns
		t.Helper()
		if _, err := cl.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(want bool, when string) {
		t.Helper()
		if got := c.FrameReady(); got != want {
			t.Fatalf("%s: FrameReady %v, want %v", when, got, want)
		}
	}
	ready(false, "nothing sent")
	small := frame(TypeHeartbeat, (&Heartbeat{Nonce: 1}).Encode(nil))
	write(append(append([]byte{}, small...), small...))
	ready(false, "nothing read yet (the Conn knows no header)")
	if _, _, err := c.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	ready(true, "a small frame whole in the buffer")
	if _, _, err := c.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	ready(false, "everything read")

	const n = 40 << 10
	f := largeFrame(n)
	write(append(append([]byte{}, f...), f[:5+n/2]...))
	readLarge(t, c, n)
	ready(false, "half of the next payload has come")
	write(f[5+n/2 : len(f)-1])
	ready(false, "all but its last byte")
	write(f[len(f)-1:])
	ready(true, "the header read ahead and the rest in the socket")
	readLarge(t, c, n)
	ready(false, "everything read")
}
