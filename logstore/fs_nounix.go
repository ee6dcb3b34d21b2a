//go:build !unix

package logstore

import (
	"io"
	"os"
)

// lockFile only creates the file where flock is not available.
func lockFile(name string) (io.Closer, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
}
