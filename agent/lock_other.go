//go:build !unix

package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockFile: see lock_unix.go. Without flock, the file is only created: two
// agents sharing a state directory are not detected on this platform.
const lockFile = "lock"

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("agent: state dir lock: %w", err)
	}
	return f, nil
}
