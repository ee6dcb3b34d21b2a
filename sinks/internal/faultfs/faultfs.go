// Package faultfs wraps a file.FS (a local directory, usually) so that
// tests can fail any operation, and kill the "process": after Kill every
// operation fails, as if the sink had died there, while what reached the
// directory stays (a process crash, not a power cut: see crashfs for that).
package faultfs

import (
	"errors"
	"io/fs"
	"sync"

	"logship/sinks/file"
	"logship/sinks/internal/crashfs"
)

// ErrDead is returned by every operation after Kill.
var ErrDead = errors.New("faultfs: process is dead")

// Hook is called before every operation; a non-nil error fails it.
// Operations are named as crashfs names them.
type Hook func(op crashfs.Op, name string) error

// FS is a file.FS that runs a hook before each operation of inner. Safe
// for concurrent use.
type FS struct {
	inner file.FS
	mu    sync.Mutex
	hook  Hook
	dead  bool
}

var _ file.FS = (*FS)(nil)

// Wrap returns an FS over inner.
func Wrap(inner file.FS) *FS { return &FS{inner: inner} }

// SetHook sets the hook (nil: none) and brings the FS back to life.
func (f *FS) SetHook(h Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook, f.dead = h, false
}

// Kill makes every later operation fail with ErrDead.
func (f *FS) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead = true
}

func (f *FS) before(op crashfs.Op, name string) error {
	f.mu.Lock()
	h, dead := f.hook, f.dead
	f.mu.Unlock()
	if !dead && h != nil {
		if err := h(op, name); err != nil {
			return &fs.PathError{Op: string(op), Path: name, Err: err}
		}
		f.mu.Lock()
		dead = f.dead
		f.mu.Unlock()
	}
	if dead {
		return &fs.PathError{Op: string(op), Path: name, Err: ErrDead}
	}
	return nil
}

// MkdirAll implements file.FS.
func (f *FS) MkdirAll(dir string) error {
	if err := f.before(crashfs.OpMkdir, dir); err != nil {
		return err
	}
	return f.inner.MkdirAll(dir)
}

// Create implements file.FS.
func (f *FS) Create(name string) (file.File, error) {
	if err := f.before(crashfs.OpCreate, name); err != nil {
		return nil, err
	}
	h, err := f.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &handle{fs: f, f: h, name: name}, nil
}

// Rename implements file.FS.
func (f *FS) Rename(oldname, newname string) error {
	if err := f.before(crashfs.OpRename, oldname); err != nil {
		return err
	}
	return f.inner.Rename(oldname, newname)
}

// ReadDir implements file.FS.
func (f *FS) ReadDir(dir string) ([]string, error) {
	if err := f.before(crashfs.OpReadDir, dir); err != nil {
		return nil, err
	}
	return f.inner.ReadDir(dir)
}

// ReadFile implements file.FS.
func (f *FS) ReadFile(name string) ([]byte, error) {
	if err := f.before("read", name); err != nil {
		return nil, err
	}
	return f.inner.ReadFile(name)
}

// Stat implements file.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	if err := f.before(crashfs.OpStat, name); err != nil {
		return nil, err
	}
	return f.inner.Stat(name)
}

// Remove implements file.FS.
func (f *FS) Remove(name string) error {
	if err := f.before(crashfs.OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

// SyncDir implements file.FS.
func (f *FS) SyncDir(dir string) error {
	if err := f.before(crashfs.OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

type handle struct {
	fs   *FS
	f    file.File
	name string
}

func (h *handle) Write(p []byte) (int, error) {
	if err := h.fs.before(crashfs.OpWrite, h.name); err != nil {
		// Mid-write: half of p reaches the file, as a process killed in
		// the middle of a write(2) of a large buffer might leave.
		if errors.Is(err, ErrDead) && len(p) > 1 {
			h.f.Write(p[:len(p)/2])
		}
		return 0, err
	}
	return h.f.Write(p)
}

func (h *handle) Sync() error {
	if err := h.fs.before(crashfs.OpSync, h.name); err != nil {
		return err
	}
	return h.f.Sync()
}

// Close always closes the inner file (a dead process's files are closed
// by the kernel), and reports the hook's error if any.
func (h *handle) Close() error {
	err := h.fs.before(crashfs.OpClose, h.name)
	cerr := h.f.Close()
	if err != nil {
		return err
	}
	return cerr
}
