//go:build !linux

package agent

import "os"

// currentPath: see path_linux.go; other platforms cannot say.
func currentPath(*os.File) (string, bool) { return "", false }
