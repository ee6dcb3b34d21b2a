//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile is the file in StateDir that an agent holds an exclusive
// flock(2) on while it runs: two agents sharing a state directory would
// overwrite each other's positions.
const lockFile = "lock"

// lockDir takes the state directory's lock, or fails at once if another
// process holds it. The lock goes with the returned file's descriptor:
// closing it, or the process ending in any way, releases it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("agent: state dir lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("agent: state dir %s is in use by another agent (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("agent: state dir lock %s: %w", path, err)
	}
	return f, nil
}
