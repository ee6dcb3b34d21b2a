package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// birthTime returns the creation time of the open file f, from statx(2).
// ok is false when the kernel or the file system does not report one (the
// statx mask lacks STATX_BTIME): the caller then falls back to a random
// salt.
func birthTime(f *os.File) (b birth, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return birth{}, false
	}
	var stx unix.Statx_t
	var serr error
	err = rc.Control(func(fd uintptr) {
		for {
			serr = unix.Statx(int(fd), "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_BTIME, &stx)
			if serr != unix.EINTR {
				return
			}
		}
	})
	if err != nil || serr != nil || stx.Mask&unix.STATX_BTIME == 0 {
		return birth{}, false
	}
	return birth{sec: stx.Btime.Sec, nsec: stx.Btime.Nsec}, true
}
