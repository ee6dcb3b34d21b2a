package agent

import (
	"os"
	"strconv"
	"strings"
)

// currentPath returns the path an open file has now (after renames), from
// /proc/self/fd; ok is false for a deleted file or when /proc cannot say.
func currentPath(f *os.File) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		return "", false
	}
	return p, true
}
