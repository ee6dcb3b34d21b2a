package logstore

import (
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the metadata needed to read it back (its
// size), but not its timestamps: cheaper than fsync for an appended log.
func fdatasync(f *os.File) error {
	var serr error
	if err := withFd(f, func(fd int) {
		for {
			serr = unix.Fdatasync(fd)
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// writevAt writes bufs at off with pwritev: as many calls as short writes
// and IOV_MAX take, usually one.
func (f osFile) writevAt(bufs [][]byte, off int64) error {
	const iovMax = 1024
	var werr error
	cloned := false
	err := withFd(f.File, func(fd int) {
		for len(bufs) > 0 {
			n, err := unix.Pwritev(fd, bufs[:min(len(bufs), iovMax)], off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return
			}
			off += int64(n)
			if n < iovLen(bufs) && !cloned {
				bufs, cloned = slices.Clone(bufs), true // the caller's slice stays as it is
			}
			for n > 0 {
				if n < len(bufs[0]) {
					bufs[0] = bufs[0][n:]
					break
				}
				n -= len(bufs[0])
				bufs = bufs[1:]
			}
		}
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return &os.PathError{Op: "pwritev", Path: f.Name(), Err: werr}
	}
	return nil
}

func iovLen(bufs [][]byte) (n int) {
	for _, b := range bufs {
		n += len(b)
	}
	return n
}
