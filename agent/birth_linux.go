package agent

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// changeTime returns the status change time (ctime) of a file: the time
// stamp of its last change, a truncation included, from the same clock
// as birth times.
func changeTime(fi os.FileInfo) (time.Time, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(st.Ctim.Unix()), true
}

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
