package logstore

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"logship/logstore/batch"
)

// segCache bounds the open sealed segments of a whole Store: a sealed
// segment's file is opened, and its indexes loaded, when a reader needs
// them, and the least recently used are closed once more than max are
// open. Reference counts keep a segment that a reader still uses open
// after it is evicted (or deleted) until the reader releases it, so the
// bound is max plus the segments in use at that moment. The active
// segment of each partition is pinned (one reference held by its
// partition) and never in the LRU. See doc.go, "Segment lifecycle".
//
// Lock order: Partition.rw, then segment.loadMu, then segCache.mu, then
// segment.idxMu. Files are closed outside mu.
type segCache struct {
	fsys     fileSystem
	log      *slog.Logger
	interval int // IndexIntervalBytes, for rebuilding an index
	max      int

	mu  sync.Mutex
	lru list.List // of *segment: open, sealed, counted; front is the most recently used
}

func newSegCache(opts *Options, fsys fileSystem) *segCache {
	return &segCache{fsys: fsys, log: opts.Logger, interval: opts.IndexIntervalBytes, max: opts.MaxOpenSegments}
}

// errSegmentGone is returned by acquire for a segment deleted (or closed)
// before it was loaded.
var errSegmentGone = errors.New("logstore: segment deleted")

// acquire makes sure seg's file is open and its indexes loaded, and keeps
// them so until release. The caller holds its partition's rw (shared), so
// retention cannot delete seg meanwhile: a segment deleted later stays
// readable until released.
func (c *segCache) acquire(seg *segment) error {
	c.mu.Lock()
	if seg.gone && seg.f == nil {
		c.mu.Unlock()
		return errSegmentGone
	}
	seg.refs++
	if seg.f != nil {
		closing := c.touchLocked(seg)
		c.mu.Unlock()
		closeSegments(closing)
		return nil
	}
	c.mu.Unlock()

	seg.loadMu.Lock()
	defer seg.loadMu.Unlock()
	c.mu.Lock()
	loaded := seg.f != nil
	c.mu.Unlock()
	if loaded {
		return nil // loaded by another reader while this one waited
	}
	f, entries, times, err := c.load(seg)
	c.mu.Lock()
	if err != nil {
		seg.refs--
		c.mu.Unlock()
		return err
	}
	seg.f = f
	seg.idxMu.Lock()
	seg.entries, seg.times = entries, times
	seg.idxMu.Unlock()
	closing := c.touchLocked(seg)
	c.mu.Unlock()
	closeSegments(closing)
	return nil
}

// release drops a reference taken by acquire. The last reference to an
// evicted or deleted segment closes its file.
func (c *segCache) release(seg *segment) {
	c.mu.Lock()
	seg.refs--
	if seg.refs < 0 {
		c.mu.Unlock()
		panic(fmt.Sprintf("BUG: logstore: segment %s released more than acquired", seg.path))
	}
	var closing []closingFile
	if seg.refs == 0 && seg.elem == nil && seg.f != nil {
		closing = append(closing, c.dropLocked(seg))
	}
	c.mu.Unlock()
	closeSegments(closing)
}

// seal moves a segment that stops being active into the LRU, as the most
// recently used, and drops its partition's pin.
func (c *segCache) seal(seg *segment) {
	c.mu.Lock()
	closing := c.touchLocked(seg)
	seg.refs--
	c.mu.Unlock()
	closeSegments(closing)
}

// forget marks seg gone (deleted by retention, or its partition closed):
// it leaves the LRU, is never reopened, and its file is closed now if no
// one uses it, else by the last release. pinned says whether seg is a
// partition's active segment, whose pin is dropped too.
func (c *segCache) forget(seg *segment, pinned bool) {
	c.mu.Lock()
	seg.gone = true
	if pinned {
		seg.refs--
	}
	if seg.elem != nil {
		c.lru.Remove(seg.elem)
		seg.elem = nil
	}
	var closing []closingFile
	if seg.refs == 0 && seg.f != nil {
		closing = append(closing, c.dropLocked(seg))
	}
	c.mu.Unlock()
	closeSegments(closing)
}

// open returns how many sealed segments are open and counted.
func (c *segCache) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// touchLocked puts an open segment at the front of the LRU and evicts from
// the back past max: unused segments are closed (returned, for the caller
// to close outside mu), used ones only leave the LRU and close at their
// last release. A gone segment is never put back.
func (c *segCache) touchLocked(seg *segment) []closingFile {
	switch {
	case seg.gone:
		return nil
	case seg.elem != nil:
		c.lru.MoveToFront(seg.elem)
		return nil
	}
	seg.elem = c.lru.PushFront(seg)
	var closing []closingFile
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*segment)
		old.elem = nil
		if old.refs == 0 {
			closing = append(closing, c.dropLocked(old))
		}
	}
	return closing
}

// closingFile is a file to close once the cache's lock is released.
type closingFile struct {
	f    file
	path string
}

// dropLocked takes seg's file and indexes away (for the caller to close
// the file outside mu). seg has no references.
func (c *segCache) dropLocked(seg *segment) closingFile {
	cf := closingFile{seg.f, seg.path}
	seg.f = nil
	seg.idxMu.Lock()
	seg.entries, seg.times = nil, nil
	seg.idxMu.Unlock()
	return cf
}

// closeSegments closes files dropped by the cache. A read-only use of a
// sealed file cannot lose data on close, so errors are only of interest
// to tests that count descriptors.
func closeSegments(cs []closingFile) {
	for _, c := range cs {
		c.f.Close()
	}
}

// load opens a sealed segment's file and reads its offset index (the time
// index waits for loadTimes: most readers never need it). An index file
// that is missing or does not decode (damaged after Open checked it) is
// rebuilt from a scan of the segment and rewritten.
func (c *segCache) load(seg *segment) (_ file, _ []indexEntry, _ []timeEntry, err error) {
	f, err := c.fsys.OpenRW(seg.path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("logstore: open %s: %w", seg.path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	size := seg.size.Load()
	data, err := c.fsys.ReadFile(indexPathOf(seg.path))
	var entries []indexEntry
	if err == nil {
		entries, err = decodeIndex(data, seg.base, size)
	}
	if err == nil {
		return f, entries, nil, nil
	}
	entries, times, err := c.rebuild(seg, f, err)
	return f, entries, times, err
}

// loadTimes loads the time index of an acquired sealed segment, if it is
// not in memory yet.
func (c *segCache) loadTimes(seg *segment) error {
	seg.loadMu.Lock()
	defer seg.loadMu.Unlock()
	seg.idxMu.RLock()
	loaded := seg.times != nil // a segment with batches has at least one entry
	seg.idxMu.RUnlock()
	if loaded {
		return nil
	}
	data, err := c.fsys.ReadFile(timeIndexPathOf(seg.path))
	var times []timeEntry
	if err == nil {
		times, err = decodeTimeIndex(data, seg.base)
	}
	if err == nil && len(times) == 0 {
		err = fmt.Errorf("%w: no entry for a segment with batches", errTimeIndex)
	}
	if err != nil {
		if _, times, err = c.rebuild(seg, seg.f, err); err != nil {
			return err
		}
	}
	seg.idxMu.Lock()
	seg.times = times
	seg.idxMu.Unlock()
	return nil
}

// rebuild rebuilds both indexes of a sealed segment from a scan of f, its
// open file, after why (an error reading or decoding one of them), and
// rewrites their files.
func (c *segCache) rebuild(seg *segment, f file, why error) ([]indexEntry, []timeEntry, error) {
	if !errors.Is(why, errIndex) && !errors.Is(why, errTimeIndex) && !errors.Is(why, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("logstore: load index of %s: %w", seg.path, why)
	}
	c.log.Warn("rebuilding indexes", "file", seg.path, "err", why)
	size := seg.size.Load()
	tmp := newSegment(seg.base, seg.path, f, size)
	res := scanSegment(f, fileHeaderSize, seg.base, size, func(pos int64, h *batch.Header) {
		tmp.noteBatch(pos, h, c.interval)
	})
	if res.ioErr != nil {
		return nil, nil, fmt.Errorf("logstore: read %s: %w", seg.path, res.ioErr)
	}
	if res.damage != nil {
		return nil, nil, &CorruptionError{Path: seg.path, Offset: res.pos, Err: res.damage}
	}
	tmp.sealTimes()
	if err := writeIndexFiles(c.fsys, seg.path, seg.base, tmp.entries, tmp.times); err != nil {
		c.log.Warn("cannot rewrite indexes", "file", seg.path, "err", err)
	}
	return tmp.entries, tmp.times, nil
}

// writeIndexFiles replaces the offset and time index files of the segment
// at logPath, each atomically (tmp, fsync, rename), with one fsync of the
// directory for both.
func writeIndexFiles(fsys fileSystem, logPath string, base int64, entries []indexEntry, times []timeEntry) error {
	files := []struct {
		path string
		data []byte
	}{
		{indexPathOf(logPath), encodeIndex(base, entries)},
		{timeIndexPathOf(logPath), encodeTimeIndex(base, times)},
	}
	for _, f := range files {
		if err := writeFileSynced(fsys, f.path+tmpSuffix, f.data); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := fsys.Rename(f.path+tmpSuffix, f.path); err != nil {
			return err
		}
	}
	return fsys.SyncDir(filepath.Dir(logPath))
}

// writeFileSynced creates path (replacing a leftover), writes data and
// fsyncs it.
func writeFileSynced(fsys fileSystem, path string, data []byte) (err error) {
	if err := fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := fsys.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fsys.Remove(path)
		}
	}()
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
