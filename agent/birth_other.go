//go:build !linux

package agent

import "os"

// birthTime is not implemented on this platform: sources get a random salt
// instead (see doc.go, "Sources and their identity").
func birthTime(f *os.File) (birth, bool) { return birth{}, false }
