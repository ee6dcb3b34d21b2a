//go:build unix

package logstore

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

type fileLock struct{ f *os.File }

func (l fileLock) Close() error { return l.f.Close() } // closing drops the flock

func lockFile(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	var lerr error
	if err := withFd(f, func(fd int) { lerr = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
		f.Close()
		return nil, err
	}
	if lerr != nil {
		f.Close()
		return nil, fmt.Errorf("logstore: %s is locked by another process: %w", name, lerr)
	}
	return fileLock{f}, nil
}

// withFd runs fn with f's descriptor, holding a reference so that a
// concurrent Close cannot recycle the descriptor under it.
func withFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}
