package statefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "positions")
	if _, _, err := Read(p, "positions"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := Write(p, "positions", 1, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	v, body, err := Read(p, "positions")
	if err != nil || v != 1 || string(body) != `{"a":1}` {
		t.Fatalf("v=%d body=%q err=%v", v, body, err)
	}
	if _, _, err := Read(p, "offsets"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong kind: %v", err)
	}
}

// TestEveryDamageIsCaught truncates the file at every length and flips
// every byte: Decode must refuse each one, never panic.
func TestEveryDamageIsCaught(t *testing.T) {
	data := Encode("offsets", 1, []byte(`{"sink":"archive","offset":12345}`))
	for n := 0; n < len(data); n++ {
		if _, _, err := Decode("f", "offsets", data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
	}
	for i := range data {
		c := append([]byte(nil), data...)
		c[i] ^= 0x01
		if _, _, err := Decode("f", "offsets", c); err == nil {
			t.Fatalf("flip at %d accepted: %q", i, c)
		}
	}
}

func TestKeepBroken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "positions")
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst, err := KeepBroken(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "garbage" {
		t.Fatalf("%q %v", b, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode("positions", 1, []byte(`{}`)))
	f.Add([]byte("logship positions v1 crc32c=00000000 len=0\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _, _ = Decode("f", "positions", b) })
}
