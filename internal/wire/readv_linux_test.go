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
