package file

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FS is the little the sink needs from a filesystem. Paths are
// slash-separated. The sink's rolling, naming and recovery code uses only
// this interface, so another store (HDFS) only adds an implementation.
//
// An implementation is used by many partition goroutines at once and must
// be safe for concurrent use; a File is used by one goroutine.
type FS interface {
	// MkdirAll creates dir and any missing parents; existing ones are fine.
	MkdirAll(dir string) error
	// Create creates a new, empty file for writing. It fails when name
	// exists.
	Create(name string) (File, error)
	// Rename moves oldname to newname, replacing newname atomically when
	// it exists (markers are replaced that way; before publishing a file,
	// the sink checks with Stat that its name is free).
	Rename(oldname, newname string) error
	// ReadFile returns a whole (small) file: a marker. A missing name is
	// an error that satisfies errors.Is(err, fs.ErrNotExist).
	ReadFile(name string) ([]byte, error)
	// ReadDir returns the names of the entries of dir, in any order. A
	// missing dir is an error that satisfies errors.Is(err, fs.ErrNotExist).
	ReadDir(dir string) ([]string, error)
	// Stat describes name. A missing name is an error that satisfies
	// errors.Is(err, fs.ErrNotExist).
	Stat(name string) (fs.FileInfo, error)
	// Remove removes a file. A missing name is an error that satisfies
	// errors.Is(err, fs.ErrNotExist).
	Remove(name string) error
	// SyncDir makes the creations, renames and removals done in dir so far
	// durable (fsync of the directory). A store whose namespace changes are
	// durable once they return (HDFS: the NameNode logs them) does nothing.
	SyncDir(dir string) error
}

// ContextFS is an FS whose operations can be bounded by a context: a
// remote store (HDFS) whose calls may hang for as long as its own timeout.
// The sink calls WithContext with the context of the Open, Write, Tick or
// Close it works for, and does that call's operations through the FS it
// returns, which must return once ctx is done (failing the operation
// if it did not complete) and refuse to start one after. The sinks
// runtime bounds Close by its close timeout (30s by default) and cancels
// Open at shutdown: a hung NameNode must not hold either past that.
//
// A File's operations are bounded by Deadliner instead. The local
// filesystem does not implement ContextFS: its calls do not hang (or, on
// a hung disk, cannot be interrupted anyway), and it stays as cheap as a
// system call.
type ContextFS interface {
	FS
	WithContext(ctx context.Context) FS
}

// File is a file being written.
type File interface {
	io.Writer
	// Sync makes everything written so far durable (fsync; HDFS: the
	// data is flushed to every datanode of the pipeline; the file is
	// complete and durable once Close returns).
	Sync() error
	// Close closes the file. After a failed Sync the caller still calls it.
	Close() error
}

// Deadliner is a File whose operations can be bounded in time: the sink
// sets the deadline of its Close (shutdown) on the file it publishes, and
// every later Write, Sync and Close of the file returns by then.
type Deadliner interface {
	SetDeadline(t time.Time) error
}

// OSFS is the local filesystem.
type OSFS struct{}

var _ FS = OSFS{}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(filepath.FromSlash(dir), 0o755) }

// Create implements FS. On Linux the file starts the write-back of its
// data as it goes (osFile), so that the sync at publish finds little left
// to write.
func (OSFS) Create(name string) (File, error) {
	f, err := os.OpenFile(filepath.FromSlash(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

// writebackBytes is how many bytes an osFile writes between two requests
// to start their write-back.
const writebackBytes = 4 << 20

// osFile is a file of OSFS being written. Every writebackBytes it asks the
// kernel to start writing the new bytes to disk, and waits for the bytes
// it asked for the time before (Linux: sync_file_range; elsewhere
// nothing). Without that the kernel keeps the whole file dirty in memory
// until the sync at publish (its own write-back starts only after 30s, or
// when gigabytes are dirty), and that sync then writes all of it while
// the partition waits: 100 MiB was about 50ms of a fast disk's time on
// the writer's path at every roll. With it the disk writes while the
// writer fetches, decodes and formats, and at most about twice
// writebackBytes of a file are not on disk yet; a writer faster than the
// disk waits for it every writebackBytes instead of all at once at the
// sync. It is only a hint: an error is left for Sync to report. Used by
// one goroutine, like any File.
type osFile struct {
	f *os.File
	// written is the file's size so far; asked is where the last request
	// ended, and prev where it began.
	written, asked, prev int64
}

// Write implements File.
func (f *osFile) Write(p []byte) (int, error) {
	n, err := f.f.Write(p)
	f.written += int64(n)
	if f.written-f.asked >= writebackBytes {
		startWriteback(f.f, f.prev, f.written)
		f.prev, f.asked = f.asked, f.written
	}
	return n, err
}

// Sync implements File.
func (f *osFile) Sync() error { return f.f.Sync() }

// Close implements File.
func (f *osFile) Close() error { return f.f.Close() }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error {
	return os.Rename(filepath.FromSlash(oldname), filepath.FromSlash(newname))
}

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	f, err := os.Open(filepath.FromSlash(dir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Readdirnames does not sort or stat: cheap on a directory of
	// thousands of published files.
	return f.Readdirnames(-1)
}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(filepath.FromSlash(name)) }

// Stat implements FS.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(filepath.FromSlash(name)) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(filepath.FromSlash(name)) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.FromSlash(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
