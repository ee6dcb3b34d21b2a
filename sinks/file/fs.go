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

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	return os.OpenFile(filepath.FromSlash(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

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
