package logstore

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// memFS is an in-memory fileSystem that remembers what is durable, to
// simulate power loss (pebble's vfs.NewCrashableMem is the model): a file's
// content counts as of its last Sync, a directory entry as of its
// directory's last SyncDir. crash returns what a power loss would leave.
// Directories themselves are durable at once, for simplicity.
type memFS struct {
	mu      sync.Mutex
	files   map[string]*memInode // current names
	durable map[string]*memInode // names as of the last SyncDir of their directory
	dirs    map[string]bool
	locks   map[string]bool
}

type memInode struct {
	mu     sync.Mutex
	data   []byte
	synced []byte
}

func newMemFS() *memFS {
	return &memFS{
		files:   map[string]*memInode{},
		durable: map[string]*memInode{},
		dirs:    map[string]bool{"/": true, ".": true},
		locks:   map[string]bool{},
	}
}

// crash returns the file system a power loss would leave behind: durable
// names, each with its synced content. With rng, each file also keeps a
// random part of the bytes written after its last sync (a torn write):
// either a prefix of them or as many zeros.
func (m *memFS) crash(rng *rand.Rand) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := newMemFS()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	for name, ino := range m.durable {
		ino.mu.Lock()
		data := slices.Clone(ino.synced)
		if rng != nil && len(ino.data) > len(data) && string(ino.data[:len(data)]) == string(data) {
			extra := ino.data[len(data):]
			k := rng.IntN(len(extra) + 1)
			if rng.IntN(2) == 0 {
				data = append(data, extra[:k]...)
			} else {
				data = append(data, make([]byte, k)...)
			}
		}
		ino.mu.Unlock()
		n := &memInode{data: data, synced: slices.Clone(data)}
		out.files[name] = n
		out.durable[name] = n
	}
	return out
}

func memPathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

func (m *memFS) Create(name string) (file, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[filepath.Dir(name)] {
		return nil, memPathErr("create", name, os.ErrNotExist)
	}
	if _, ok := m.files[name]; ok || m.dirs[name] {
		return nil, memPathErr("create", name, os.ErrExist)
	}
	ino := &memInode{}
	m.files[name] = ino
	return &memFile{ino: ino, name: name}, nil
}

func (m *memFS) OpenRW(name string) (file, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[name]
	if !ok {
		return nil, memPathErr("open", name, os.ErrNotExist)
	}
	return &memFile{ino: ino, name: name}, nil
}

func (m *memFS) ReadFile(name string) ([]byte, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	ino, ok := m.files[name]
	m.mu.Unlock()
	if !ok {
		return nil, memPathErr("open", name, os.ErrNotExist)
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	return slices.Clone(ino.data), nil
}

func (m *memFS) Remove(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; !ok {
		return memPathErr("remove", name, os.ErrNotExist)
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[oldname]
	if !ok {
		return memPathErr("rename", oldname, os.ErrNotExist)
	}
	delete(m.files, oldname)
	m.files[newname] = ino
	return nil
}

func (m *memFS) MkdirAll(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(name); !m.dirs[d]; d = filepath.Dir(d) {
		m.dirs[d] = true
	}
	return nil
}

func (m *memFS) ReadDir(name string) ([]dirEntry, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[name] {
		return nil, memPathErr("readdir", name, os.ErrNotExist)
	}
	var out []dirEntry
	for f := range m.files {
		if filepath.Dir(f) == name {
			out = append(out, dirEntry{Name: filepath.Base(f)})
		}
	}
	for d := range m.dirs {
		if d != name && filepath.Dir(d) == name {
			out = append(out, dirEntry{Name: filepath.Base(d), IsDir: true})
		}
	}
	slices.SortFunc(out, func(a, b dirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *memFS) SyncDir(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	for f := range m.durable {
		if filepath.Dir(f) == name {
			delete(m.durable, f)
		}
	}
	for f, ino := range m.files {
		if filepath.Dir(f) == name {
			m.durable[f] = ino
		}
	}
	return nil
}

type memLock struct {
	m    *memFS
	name string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	delete(l.m.locks, l.name)
	return nil
}

func (m *memFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks[name] {
		return nil, errors.New("memfs: locked")
	}
	m.locks[name] = true
	return memLock{m, name}, nil
}

// memFile is an open memInode; safe for concurrent use.
type memFile struct {
	ino    *memInode
	name   string
	closed atomic.Bool
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed.Load() {
		return 0, memPathErr("read", f.name, os.ErrClosed)
	}
	f.ino.mu.Lock()
	defer f.ino.mu.Unlock()
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if f.closed.Load() {
		return 0, memPathErr("write", f.name, os.ErrClosed)
	}
	f.ino.mu.Lock()
	defer f.ino.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *memFile) Sync() error {
	if f.closed.Load() {
		return memPathErr("sync", f.name, os.ErrClosed)
	}
	f.ino.mu.Lock()
	defer f.ino.mu.Unlock()
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.ino.mu.Lock()
	defer f.ino.mu.Unlock()
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.ino.mu.Lock()
	defer f.ino.mu.Unlock()
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	if f.closed.Swap(true) {
		return memPathErr("close", f.name, os.ErrClosed)
	}
	return nil
}

// hookFS wraps a fileSystem to count segment fsyncs and inject faults.
type hookFS struct {
	fileSystem
	syncs   atomic.Int64 // Sync calls on .log files
	onSync  atomic.Pointer[func(name string) error]
	onWrite atomic.Pointer[func(name string) error]
}

func (h *hookFS) setOnSync(fn func(name string) error)  { h.onSync.Store(&fn) }
func (h *hookFS) setOnWrite(fn func(name string) error) { h.onWrite.Store(&fn) }

func (h *hookFS) wrap(f file, err error, name string) (file, error) {
	if err != nil {
		return nil, err
	}
	return &hookFile{file: f, fs: h, name: name}, nil
}

func (h *hookFS) Create(name string) (file, error) {
	f, err := h.fileSystem.Create(name)
	return h.wrap(f, err, name)
}

func (h *hookFS) OpenRW(name string) (file, error) {
	f, err := h.fileSystem.OpenRW(name)
	return h.wrap(f, err, name)
}

type hookFile struct {
	file
	fs   *hookFS
	name string
}

func (f *hookFile) Sync() error {
	if strings.HasSuffix(f.name, logSuffix) {
		f.fs.syncs.Add(1)
	}
	if fn := f.fs.onSync.Load(); fn != nil && *fn != nil {
		if err := (*fn)(f.name); err != nil {
			return err
		}
	}
	return f.file.Sync()
}

func (f *hookFile) WriteAt(p []byte, off int64) (int, error) {
	if fn := f.fs.onWrite.Load(); fn != nil && *fn != nil {
		if err := (*fn)(f.name); err != nil {
			// A failed write may still have written part of the data.
			n, _ := f.file.WriteAt(p[:len(p)/2], off)
			return n, err
		}
	}
	return f.file.WriteAt(p, off)
}

// noSyncFS is the real file system with fsync turned off: for tests that
// damage files by hand and reopen hundreds of times, where durability is
// not what is tested and fsync latency would dominate.
type noSyncFS struct{ osFS }

type noSyncFile struct{ file }

func (noSyncFile) Sync() error        { return nil }
func (noSyncFS) SyncDir(string) error { return nil }

func (fs noSyncFS) Create(name string) (file, error) {
	f, err := fs.osFS.Create(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

func (fs noSyncFS) OpenRW(name string) (file, error) {
	f, err := fs.osFS.OpenRW(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}
