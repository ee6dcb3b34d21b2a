package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// file is what the store needs from an open file. The seam lets tests
// inject faults and simulate power loss (a file that drops unsynced writes);
// production uses *os.File through osFS. Implementations must be safe for
// concurrent use: readers call ReadAt while the writer calls WriteAt and a
// syncer calls Sync.
type file interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// dirEntry is one name in a directory listing.
type dirEntry struct {
	Name  string
	IsDir bool
}

// fileSystem is the directory side of the seam.
type fileSystem interface {
	// Create creates a new file for reading and writing; it fails if the
	// name exists.
	Create(name string) (file, error)
	// OpenRW opens an existing file for reading and writing.
	OpenRW(name string) (file, error)
	ReadFile(name string) ([]byte, error)
	Remove(name string) error
	Rename(oldname, newname string) error
	MkdirAll(name string) error
	// ReadDir lists a directory, sorted by name.
	ReadDir(name string) ([]dirEntry, error)
	// SyncDir makes creations, renames and removals in a directory durable.
	SyncDir(name string) error
	// Lock takes an exclusive lock on name (created if needed), held until
	// the returned Closer is closed, so two processes never share a store.
	Lock(name string) (io.Closer, error)
}

// osFS is the real file system.
type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return fdatasync(f.File) }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (osFS) Create(name string) (file, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenRW(name string) (file, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }
func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(name string) error           { return os.MkdirAll(name, 0o755) }

func (osFS) ReadDir(name string) ([]dirEntry, error) {
	des, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	out := make([]dirEntry, len(des))
	for i, de := range des {
		out[i] = dirEntry{Name: de.Name(), IsDir: de.IsDir()}
	}
	return out, nil
}

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (osFS) Lock(name string) (io.Closer, error) { return lockFile(name) }

// writeFileAtomic replaces path with data: tmp file, fsync, rename, fsync
// dir. A crash leaves either the old file or the new one (and maybe a .tmp
// that recovery removes), never a mix.
func writeFileAtomic(fsys fileSystem, path string, data []byte) (err error) {
	tmp := path + tmpSuffix
	if err := fsys.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			fsys.Remove(tmp)
		}
	}()
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// saveBroken copies n bytes of src from off to a new file <path>.broken,
// or <path>.broken.N with the first free N, fsyncs it and its directory,
// and returns its name. It copies in chunks: a cut tail can be large.
func saveBroken(fsys fileSystem, path string, src io.ReaderAt, off, n int64) (string, error) {
	for k := 0; k < 1000; k++ {
		name := path + brokenSuffix
		if k > 0 {
			name = fmt.Sprintf("%s%s.%d", path, brokenSuffix, k)
		}
		f, err := fsys.Create(name)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		err = copyAt(f, src, off, n)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
		return name, fsys.SyncDir(filepath.Dir(path))
	}
	return "", fmt.Errorf("logstore: too many %s%s files", path, brokenSuffix)
}

// copyAt copies n bytes of src from off to the start of dst.
func copyAt(dst io.WriterAt, src io.ReaderAt, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		chunk := buf[:min(n-done, int64(len(buf)))]
		if err := readFullAt(src, chunk, off+done); err != nil {
			return err
		}
		if _, err := dst.WriteAt(chunk, done); err != nil {
			return err
		}
		done += int64(len(chunk))
	}
	return nil
}

// readFullAt fills buf from r at off. Unlike a bare ReadAt, it accepts the
// io.EOF some implementations return with a full read at the end of a file,
// and turns a short read into io.ErrUnexpectedEOF.
func readFullAt(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// vectorWriter is a file that writes several buffers, one after the
// other, at an offset in one call (Linux's pwritev).
type vectorWriter interface {
	writevAt(bufs [][]byte, off int64) error
}

// writeAtv writes bufs one after the other at off: in one call where f
// can, else with one WriteAt each (the test file systems, other systems).
func writeAtv(f file, bufs [][]byte, off int64) error {
	if v, ok := f.(vectorWriter); ok {
		return v.writevAt(bufs, off)
	}
	for _, b := range bufs {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
