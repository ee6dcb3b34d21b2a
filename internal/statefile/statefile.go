package statefile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every *CorruptError.
var ErrCorrupt = errors.New("statefile: corrupt")

// CorruptError says which file is damaged and how.
type CorruptError struct {
	Path   string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("statefile: %s is corrupt: %s", e.Path, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// WriteAtomic replaces path with data: tmp file, fsync, rename, fsync dir.
func WriteAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Encode returns the bytes of a state file of the given kind and version.
func Encode(kind string, version int, body []byte) []byte {
	h := fmt.Sprintf("logship %s v%d crc32c=%08x len=%d\n", kind, version, crc32.Checksum(body, castagnoli), len(body))
	return append([]byte(h), body...)
}

// Write atomically replaces path with a state file holding body.
func Write(path, kind string, version int, body []byte) error {
	return WriteAtomic(path, Encode(kind, version, body))
}

// Decode checks a state file's bytes and returns its version and body.
// The error is a *CorruptError with Path set to name.
func Decode(name, kind string, data []byte) (version int, body []byte, err error) {
	bad := func(format string, a ...any) (int, []byte, error) {
		return 0, nil, &CorruptError{Path: name, Reason: fmt.Sprintf(format, a...)}
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return bad("no header line")
	}
	f := bytes.Fields(data[:nl])
	if len(f) != 5 || string(f[0]) != "logship" {
		return bad("header %q is not a logship state file header", truncate(data[:nl]))
	}
	if string(f[1]) != kind {
		return bad("holds %q, want %q", f[1], kind)
	}
	if !bytes.HasPrefix(f[2], []byte("v")) {
		return bad("bad version %q", f[2])
	}
	v, err := strconv.Atoi(string(f[2][1:]))
	if err != nil || v < 1 {
		return bad("bad version %q", f[2])
	}
	crcs, ok := bytes.CutPrefix(f[3], []byte("crc32c="))
	if !ok {
		return bad("bad checksum field %q", f[3])
	}
	want, err := strconv.ParseUint(string(crcs), 16, 32)
	if err != nil {
		return bad("bad checksum field %q", f[3])
	}
	ls, ok := bytes.CutPrefix(f[4], []byte("len="))
	if !ok {
		return bad("bad length field %q", f[4])
	}
	n, err := strconv.Atoi(string(ls))
	if err != nil || n < 0 {
		return bad("bad length field %q", f[4])
	}
	body = data[nl+1:]
	if len(body) != n {
		return bad("body is %d bytes, header says %d", len(body), n)
	}
	if got := crc32.Checksum(body, castagnoli); got != uint32(want) {
		return bad("crc32c %08x, header says %08x", got, want)
	}
	return v, body, nil
}

// Read reads and checks the state file at path. A missing file is an error
// satisfying errors.Is(err, fs.ErrNotExist).
func Read(path, kind string) (version int, body []byte, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	return Decode(path, kind, data)
}

// KeepBroken renames a damaged state file to path.broken (replacing an
// older one) so that a person can look at it, and returns the new name.
func KeepBroken(path string) (string, error) {
	dst := path + ".broken"
	if err := os.Rename(path, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return dst, SyncDir(filepath.Dir(path))
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
