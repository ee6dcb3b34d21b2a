package wire

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// vreader reads a large payload straight from a TCP socket into the
// frame's buffer, and in the same readv the header of the frame after it
// (readLarge). Through the Conn's bufio.Reader the same payload costs an
// extra read and a copy: the reader's buffer fills with the payload's
// first 16 KiB while it looks for the header, and they are copied out.
type vreader struct {
	nc  net.Conn
	rc  syscall.RawConn
	iov [2][]byte
	n   int   // the last readv's result
	err error // and its error
	fn  func(fd uintptr) bool

	inq    int // the last queued()
	inqErr error
	inqFn  func(fd uintptr)
}

// newVReader returns a vreader for c, or nil when c is not a TCP
// connection (TLS, a pipe): those read through the bufio.Reader.
func newVReader(c net.Conn) *vreader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	v := &vreader{nc: c, rc: rc}
	v.fn = v.readv // once: a method value made per read would allocate
	v.inqFn = v.ioctlInq
	return v
}

// queued returns how many bytes the socket's receive queue holds (0 when
// it cannot tell).
func (v *vreader) queued() int {
	if err := v.rc.Control(v.inqFn); err != nil || v.inqErr != nil {
		return 0
	}
	return v.inq
}

func (v *vreader) ioctlInq(fd uintptr) {
	v.inq, v.inqErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
}

// readv is the RawConn callback: false asks the poller to wait until the
// socket is readable (or the read deadline passes).
func (v *vreader) readv(fd uintptr) bool {
	for {
		v.n, v.err = unix.Readv(int(fd), v.iov[:])
		if v.err != unix.EINTR {
			break
		}
	}
	if raceEnabled && v.err == nil {
		// The race detector orders a socket's writes before the reads
		// that get their bytes through the syscall package (Write
		// releases, Read acquires); unix.Readv acquires on x/sys's
		// own token, which no net.Conn.Write releases. A read of
		// nothing gives this read the ordering a net.Conn.Read has.
		syscall.Read(int(fd), nil)
	}
	return v.err != unix.EAGAIN
}

// fill reads until p is full, taking into next whatever of the following
// bytes came with the last read; it returns how many of next it filled.
// A connection closed before p is full is io.ErrUnexpectedEOF (io.EOF
// when nothing of p came). Errors are *net.OpError, as a net.Conn's Read
// returns them, so that timeouts and closed connections test the same.
func (v *vreader) fill(p, next []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		v.iov = [2][]byte{p, next}
		err := v.rc.Read(v.fn)
		v.iov = [2][]byte{}
		switch {
		case err != nil: // deadline, closed: the RawConn's own *net.OpError
			if oe, ok := err.(*net.OpError); ok {
				err = oe.Err
			}
		case v.err != nil:
			err = os.NewSyscallError("readv", v.err)
		case v.n == 0:
			if len(p) == n {
				return 0, io.EOF
			}
			return 0, io.ErrUnexpectedEOF
		case v.n > len(p):
			return v.n - len(p), nil
		default:
			p = p[v.n:]
			continue
		}
		return 0, &net.OpError{Op: "read", Net: v.nc.LocalAddr().Network(), Source: v.nc.LocalAddr(), Addr: v.nc.RemoteAddr(), Err: err}
	}
	return 0, nil
}
