package file

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback waits for the write-back of the bytes [from, to) of f
// already under way (those an earlier call started), then starts it for
// the rest of them, without waiting. Errors are ignored: f.Sync reports
// the file's write errors.
func startWriteback(f *os.File, from, to int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), from, to-from, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
	})
}
