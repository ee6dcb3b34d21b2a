package file_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"logship/sinks/file"
)

// TestOSFSFileLarge: a file of OSFS written in pieces that straddle its
// write-back steps (every 4 MiB) holds exactly the bytes written.
func TestOSFSFileLarge(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	f, err := file.OSFS{}.Create(filepath.ToSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	piece := make([]byte, 1<<20+13)
	for i := range 10 {
		for j := range piece {
			piece[j] = byte(i*31 + j)
		}
		n, err := f.Write(piece)
		if err != nil || n != len(piece) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		want.Write(piece)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file of %d bytes differs from the %d written", len(got), want.Len())
	}
	if _, err := (file.OSFS{}).Create(filepath.ToSlash(name)); !os.IsExist(err) {
		t.Fatalf("create over an existing file: %v", err)
	}
}
