package agent

import (
	"path/filepath"
	"testing"

	"logship/internal/statefile"
)

// savedPos returns the position the positions file in stateDir
// holds for the live file at path (-1: none).
func savedPos(t testing.TB, stateDir, path string) int64 {
	t.Helper()
	v, body, err := statefile.Read(filepath.Join(stateDir, positionsFile), positionsKind)
	if err != nil {
		return -1
	}
	entries, err := decodePositions(v, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Path == path && e.Inode != 0 {
			return e.Pos
		}
	}
	return -1
}
