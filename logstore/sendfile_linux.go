package logstore

import (
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// sendFile sends n bytes of f from off to c with sendfile(2). The offset
// is passed explicitly, so f's own file position is never used or moved:
// concurrent readers may share the descriptor. It waits for the socket
// to be writable through the runtime's poller, so c's write deadline
// applies. handled is false when sendfile is not supported for this pair
// (the caller then copies from byte off+sent).
func sendFile(c *net.TCPConn, f *os.File, off, n int64) (sent int64, handled bool, err error) {
	dst, err := c.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	handled = true
	var serr error
	// Control keeps f's descriptor from being closed and reused meanwhile.
	cerr := src.Control(func(sfd uintptr) {
		werr := dst.Write(func(dfd uintptr) bool {
			for sent < n {
				pos := off + sent
				k, e := unix.Sendfile(int(dfd), int(sfd), &pos, int(min(n-sent, 1<<30)))
				if k > 0 {
					sent += int64(k)
				}
				switch {
				case e == unix.EINTR:
					continue
				case e == unix.EAGAIN:
					return false // wait until writable, then call again
				case e == unix.EINVAL || e == unix.ENOSYS || e == unix.EOPNOTSUPP:
					handled = false // the caller copies the rest
					return true
				case e != nil:
					serr = &os.PathError{Op: "sendfile", Path: f.Name(), Err: e}
					return true
				case k == 0:
					serr = io.ErrUnexpectedEOF // the file is shorter than the range
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if cerr != nil {
		return sent, handled, cerr
	}
	if !handled {
		return sent, false, nil
	}
	return sent, true, serr
}
