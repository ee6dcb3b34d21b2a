//go:build !unix

package agent

import "os"

// keyOf is not implemented on this platform: the agent tracks files by
// (device, inode), which needs a Unix stat. No file is ever tracked.
func keyOf(fi os.FileInfo) (fileKey, bool) { return fileKey{}, false }
