//go:build !linux

package agent

import (
	"os"
	"time"
)

// changeTime is only needed beside birthTime.
func changeTime(fi os.FileInfo) (time.Time, bool) { return time.Time{}, false }

// birthTime is not implemented on this platform: sources get a random salt
// instead (see doc.go, "Sources and their identity").
func birthTime(f *os.File) (birth, bool) { return birth{}, false }
