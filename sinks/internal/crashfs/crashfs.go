// Package crashfs is an in-memory file.FS for the sinks' crash tests, after
// pebble's vfs.NewCrashableMem and errorfs: a hook sees every operation
// before and after it runs and can fail it, Kill makes every later
// operation fail as if the process had died, and Crash then throws away
// what a power cut would: file bytes not fsynced, and directory entries
// (creations, renames, removals) made since their directory was last
// fsynced.
//
// Directories themselves are durable as soon as they are created (the
// sink fsyncs their parents anyway).
package crashfs

import (
	"errors"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	"logship/sinks/file"
)

// Op names an operation, for hooks.
type Op string

// Operations.
const (
	OpMkdir   Op = "mkdir"
	OpCreate  Op = "create"
	OpWrite   Op = "write"
	OpSync    Op = "sync"
	OpClose   Op = "close"
	OpRename  Op = "rename"
	OpReadDir Op = "readdir"
	OpStat    Op = "stat"
	OpRemove  Op = "remove"
	OpSyncDir Op = "syncdir"
)

// ErrDead is returned by every operation after Kill, until Crash.
var ErrDead = errors.New("crashfs: process is dead")

// Hook is called before (after=false) and after (after=true, only when the
// operation succeeded) every operation, with the FS lock not held. A
// non-nil error returned before an operation fails it; after, it is ignored.
type Hook func(op Op, name string, after bool) error

type inode struct {
	data   []byte
	synced []byte
}

type dir struct {
	live    map[string]*inode
	durable map[string]*inode
}

// FS is an in-memory, crashable file.FS. Safe for concurrent use.
type FS struct {
	mu   sync.Mutex
	dirs map[string]*dir
	hook Hook
	dead bool
	gen  int // bumped by Crash: handles of an earlier generation are dead
}

var _ file.FS = (*FS)(nil)

// New returns an empty FS with a root directory "/".
func New() *FS {
	return &FS{dirs: map[string]*dir{"/": newDir()}}
}

func newDir() *dir { return &dir{live: map[string]*inode{}, durable: map[string]*inode{}} }

// SetHook sets the hook (nil: none).
func (f *FS) SetHook(h Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

// Kill makes every later operation fail with ErrDead, as if the process
// using the FS had died.
func (f *FS) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead = true
}

// Crash simulates a power cut: every directory goes back to its entries as
// of its last fsync and every file to its bytes as of its last fsync. The
// FS is alive again and open handles are dead.
func (f *FS) Crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.dirs {
		d.live = maps.Clone(d.durable)
		for _, ino := range d.live {
			ino.data = slices.Clone(ino.synced)
		}
	}
	f.dead = false
	f.gen++
}

// ReadFile returns a file's current bytes (a test helper: no hook).
func (f *FS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, base, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	ino := d.live[base]
	if ino == nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.data), nil
}

// do runs op under the hook and the lock.
func (f *FS) do(op Op, name string, fn func() error) error {
	f.mu.Lock()
	h, dead := f.hook, f.dead
	f.mu.Unlock()
	if dead {
		return &fs.PathError{Op: string(op), Path: name, Err: ErrDead}
	}
	if h != nil {
		if err := h(op, name, false); err != nil {
			return &fs.PathError{Op: string(op), Path: name, Err: err}
		}
	}
	f.mu.Lock()
	if f.dead {
		f.mu.Unlock()
		return &fs.PathError{Op: string(op), Path: name, Err: ErrDead}
	}
	err := fn()
	f.mu.Unlock()
	if err != nil {
		return &fs.PathError{Op: string(op), Path: name, Err: err}
	}
	if h != nil {
		h(op, name, true)
	}
	return nil
}

// lookup returns the directory holding name and name's base. f.mu held.
func (f *FS) lookup(name string) (*dir, string, error) {
	name = path.Clean("/" + name)
	d := f.dirs[path.Dir(name)]
	if d == nil {
		return nil, "", fs.ErrNotExist
	}
	return d, path.Base(name), nil
}

// MkdirAll implements file.FS.
func (f *FS) MkdirAll(name string) error {
	return f.do(OpMkdir, name, func() error {
		for p := path.Clean("/" + name); ; p = path.Dir(p) {
			if f.dirs[p] == nil {
				f.dirs[p] = newDir()
			}
			if p == "/" {
				return nil
			}
		}
	})
}

// Create implements file.FS.
func (f *FS) Create(name string) (file.File, error) {
	var h *handle
	err := f.do(OpCreate, name, func() error {
		d, base, err := f.lookup(name)
		if err != nil {
			return err
		}
		if d.live[base] != nil || f.dirs[path.Clean("/"+name)] != nil {
			return fs.ErrExist
		}
		ino := &inode{}
		d.live[base] = ino
		h = &handle{fs: f, ino: ino, name: name, gen: f.gen}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Rename implements file.FS (replacing newname, as POSIX does).
func (f *FS) Rename(oldname, newname string) error {
	return f.do(OpRename, oldname, func() error {
		od, ob, err := f.lookup(oldname)
		if err != nil {
			return err
		}
		nd, nb, err := f.lookup(newname)
		if err != nil {
			return err
		}
		ino := od.live[ob]
		if ino == nil {
			return fs.ErrNotExist
		}
		delete(od.live, ob)
		nd.live[nb] = ino
		return nil
	})
}

// ReadDir implements file.FS.
func (f *FS) ReadDir(name string) ([]string, error) {
	var names []string
	err := f.do(OpReadDir, name, func() error {
		p := path.Clean("/" + name)
		d := f.dirs[p]
		if d == nil {
			return fs.ErrNotExist
		}
		names = slices.Collect(maps.Keys(d.live))
		for sub := range f.dirs {
			if sub != "/" && path.Dir(sub) == p {
				names = append(names, path.Base(sub))
			}
		}
		return nil
	})
	return names, err
}

// Stat implements file.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	var fi fileInfo
	err := f.do(OpStat, name, func() error {
		p := path.Clean("/" + name)
		if f.dirs[p] != nil {
			fi = fileInfo{name: path.Base(p), dir: true}
			return nil
		}
		d, base, err := f.lookup(name)
		if err != nil {
			return err
		}
		ino := d.live[base]
		if ino == nil {
			return fs.ErrNotExist
		}
		fi = fileInfo{name: base, size: int64(len(ino.data))}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fi, nil
}

// Remove implements file.FS.
func (f *FS) Remove(name string) error {
	return f.do(OpRemove, name, func() error {
		d, base, err := f.lookup(name)
		if err != nil {
			return err
		}
		if d.live[base] == nil {
			return fs.ErrNotExist
		}
		delete(d.live, base)
		return nil
	})
}

// SyncDir implements file.FS.
func (f *FS) SyncDir(name string) error {
	return f.do(OpSyncDir, name, func() error {
		d := f.dirs[path.Clean("/"+name)]
		if d == nil {
			return fs.ErrNotExist
		}
		d.durable = maps.Clone(d.live)
		return nil
	})
}

type handle struct {
	fs     *FS
	ino    *inode
	name   string
	gen    int
	closed bool
}

func (h *handle) check() error {
	if h.gen != h.fs.gen {
		return ErrDead
	}
	if h.closed {
		return fs.ErrClosed
	}
	return nil
}

// Write implements file.File.
func (h *handle) Write(p []byte) (int, error) {
	err := h.fs.do(OpWrite, h.name, func() error {
		if err := h.check(); err != nil {
			return err
		}
		h.ino.data = append(h.ino.data, p...)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync implements file.File.
func (h *handle) Sync() error {
	return h.fs.do(OpSync, h.name, func() error {
		if err := h.check(); err != nil {
			return err
		}
		h.ino.synced = slices.Clone(h.ino.data)
		return nil
	})
}

// Close implements file.File.
func (h *handle) Close() error {
	return h.fs.do(OpClose, h.name, func() error {
		if err := h.check(); err != nil {
			return err
		}
		h.closed = true
		return nil
	})
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64  { return fi.size }
func (fi fileInfo) Mode() fs.FileMode {
	if fi.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }
