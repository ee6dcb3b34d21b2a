package logstore

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"logship/logstore/batch"
)

// segment is one .log file of a partition: metadata kept for every
// segment (O(1) and small, whether its file is open or not), and a handle
// (the open file and the in-memory indexes) that only some segments have.
// See doc.go, "Segment lifecycle".
//
// Concurrency:
//   - base and path never change.
//   - size, next, firstTime and lastTime are atomics: the partition's
//     writer (holding Partition.mu) is the only one that changes them, and
//     only on the active segment (and recovery, before the partition is
//     shared).
//   - f, refs, elem and gone belong to the Store's segCache and change
//     under its mu. The active segment is pinned (refs >= 1, never in the
//     LRU), so its writer uses f freely. Anyone else uses f only between
//     segCache.acquire and release, which keeps it open; and only reads
//     bytes below the partition's End, which were completely written
//     before End moved past them.
//   - entries and times are guarded by idxMu: the writer appends to them,
//     readers binary-search them, the cache drops them when it closes f.
type segment struct {
	base int64  // offset of the first record; also in the name and header
	path string // the .log file

	size      atomic.Int64 // bytes written, header included
	next      atomic.Int64 // offset just past the last batch; base when empty
	firstTime atomic.Int64 // append time (unix ms) of the first batch; noTime when empty
	lastTime  atomic.Int64 // append time of the last batch (the greatest); noTime when empty

	// Handle state, guarded by segCache.mu.
	f      file
	refs   int           // acquires not yet released, plus 1 while active
	elem   *list.Element // in the LRU: open, sealed and counted
	gone   bool          // deleted or closed: close f at the last release, never reopen
	loadMu sync.Mutex    // serializes loading the handle

	idxMu   sync.RWMutex
	entries []indexEntry // sorted; see doc.go "Index file"
	times   []timeEntry  // sorted; see doc.go "Time index file"

	// Writer only (Partition.mu, or recovery).
	sinceIndex int64     // bytes appended since the last index entry (or the header)
	lastRel    int64     // relative offset of the last batch
	origin     time.Time // when the active segment began to age; zero when empty
}

// noTime marks a segment without batches in firstTime and lastTime.
const noTime = math.MinInt64

// newSegment returns the metadata of a segment of size bytes whose file is
// f (nil: not open).
func newSegment(base int64, path string, f file, size int64) *segment {
	s := &segment{base: base, path: path, f: f}
	s.size.Store(size)
	s.next.Store(base)
	s.firstTime.Store(noTime)
	s.lastTime.Store(noTime)
	return s
}

func (s *segment) empty() bool { return s.firstTime.Load() == noTime }

func segmentName(base int64) string { return fmt.Sprintf("%0*d%s", nameDigits, base, logSuffix) }

func indexPathOf(logPath string) string {
	return logPath[:len(logPath)-len(logSuffix)] + indexSuffix
}

func timeIndexPathOf(logPath string) string {
	return logPath[:len(logPath)-len(logSuffix)] + timeIndexSuffix
}

// parseSegmentName returns the base offset of a segment file name, or false
// when name is not exactly 20 digits followed by ".log".
func parseSegmentName(name string) (int64, bool) {
	if len(name) != nameDigits+len(logSuffix) || name[nameDigits:] != logSuffix {
		return 0, false
	}
	for _, c := range name[:nameDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	base, err := strconv.ParseInt(name[:nameDigits], 10, 64)
	if err != nil {
		return 0, false
	}
	return base, true
}

// encodeFileHeader returns the 32-byte header shared by segment and index
// files (see doc.go).
func encodeFileHeader(magic string, version byte, base int64) []byte {
	b := make([]byte, fileHeaderSize)
	copy(b[hdrOffMagic:], magic)
	b[hdrOffVersion] = version
	binary.BigEndian.PutUint64(b[hdrOffBase:], uint64(base))
	binary.BigEndian.PutUint32(b[hdrOffCRC:], batch.Checksum(b[:hdrOffCRC]))
	return b
}

// Why a header is refused.
var (
	errShortHeader = errors.New("file shorter than its header")
	errBadHeader   = errors.New("bad file header")
)

// checkFileHeader checks a header read from a segment or index file that
// should start offset base.
func checkFileHeader(b []byte, magic string, version byte, base int64) error {
	if len(b) < fileHeaderSize {
		return fmt.Errorf("%w: %d bytes", errShortHeader, len(b))
	}
	if got, want := binary.BigEndian.Uint32(b[hdrOffCRC:]), batch.Checksum(b[:hdrOffCRC]); got != want {
		return fmt.Errorf("%w: crc %08x, want %08x", errBadHeader, got, want)
	}
	if string(b[hdrOffMagic:hdrOffMagic+4]) != magic {
		return fmt.Errorf("%w: magic %q, want %q", errBadHeader, b[hdrOffMagic:hdrOffMagic+4], magic)
	}
	if b[hdrOffVersion] != version {
		return fmt.Errorf("%w: version %d, want %d", errBadHeader, b[hdrOffVersion], version)
	}
	if got := int64(binary.BigEndian.Uint64(b[hdrOffBase:])); got != base {
		return fmt.Errorf("%w: base offset %d, file name says %d", errBadHeader, got, base)
	}
	return nil
}

// createSegment creates the segment file for base in dir, writes its header
// and fsyncs it. The caller fsyncs dir.
func createSegment(fsys fileSystem, dir string, base int64) (_ *segment, err error) {
	path := filepath.Join(dir, segmentName(base))
	f, err := fsys.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			fsys.Remove(path)
		}
	}()
	if _, err := f.WriteAt(encodeFileHeader(segmentMagic, segmentVersion, base), 0); err != nil {
		return nil, fmt.Errorf("write segment header %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", path, err)
	}
	s := newSegment(base, path, f, fileHeaderSize)
	s.refs = 1 // pinned: a new segment is the active one
	return s, nil
}

// noteBatch records that the batch with header h (stamped) was appended
// at pos: metadata, an index entry when IndexIntervalBytes have gone by
// since the last one, and a time index entry for the first batch and with
// each index entry whose append time is greater than the last one's. Both
// the append path and recovery call it, so they build the same entries.
// Writer only.
func (s *segment) noteBatch(pos int64, h *batch.Header, interval int) {
	rel := h.BaseOffset - s.base
	// Append rolls before either field could overflow; a segment from
	// elsewhere that is that big just gets no more entries.
	fits := rel <= math.MaxUint32 && pos <= math.MaxUint32
	switch {
	case s.empty():
		s.idxMu.Lock()
		s.times = append(s.times, timeEntry{t: h.AppendTime, rel: 0})
		s.idxMu.Unlock()
		s.firstTime.Store(h.AppendTime)
	case s.sinceIndex >= int64(interval) && fits:
		s.idxMu.Lock()
		s.entries = append(s.entries, indexEntry{rel: uint32(rel), pos: uint32(pos)})
		if h.AppendTime > s.times[len(s.times)-1].t {
			s.times = append(s.times, timeEntry{t: h.AppendTime, rel: uint32(rel)})
		}
		s.idxMu.Unlock()
		s.sinceIndex = 0
	}
	if h.AppendTime > s.lastTime.Load() {
		s.lastTime.Store(h.AppendTime)
	}
	s.lastRel = rel
	s.sinceIndex += int64(h.Size)
	s.next.Store(h.NextOffset())
}

// sealTimes adds the time index entry that every sealed segment ends with:
// the last batch's append time, unless the last entry has it already.
// Writer only; idempotent.
func (s *segment) sealTimes() {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if len(s.times) == 0 || s.lastRel > math.MaxUint32 {
		return
	}
	if t := s.lastTime.Load(); t > s.times[len(s.times)-1].t {
		s.times = append(s.times, timeEntry{t: t, rel: uint32(s.lastRel)})
	}
}

// floor returns the position and base offset of the indexed batch to start
// a search for target from: the last entry at or below it, or the first
// batch of the segment.
func (s *segment) floor(target int64) (pos, base int64) {
	rel := target - s.base
	s.idxMu.RLock()
	defer s.idxMu.RUnlock()
	lo, hi := 0, len(s.entries) // first entry with rel > target
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int64(s.entries[m].rel) <= rel {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return fileHeaderSize, s.base
	}
	e := s.entries[lo-1]
	return int64(e.pos), s.base + int64(e.rel)
}

// find returns the position and size of the batch holding offset target:
// the last batch at or below limit whose base offset is <= target. It
// reads only batch prefixes. target must lie in the segment, below the
// offset the batch ending at limit ends with.
func (s *segment) find(target, limit int64) (pos int64, size int, err error) {
	var prefix [batch.PrefixSize]byte
	at, _ := s.floor(target)
	pos = -1
	for at < limit {
		if err := readFullAt(s.f, prefix[:], at); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: err}
			}
			return 0, 0, fmt.Errorf("logstore: read %s: %w", s.path, err)
		}
		n, err := batch.CheckPrefix(prefix[:])
		if err != nil {
			return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: err}
		}
		if at+int64(n) > limit {
			return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: fmt.Errorf("batch of %d bytes crosses the end %d", n, limit)}
		}
		if batch.BaseOffset(prefix[:]) > target {
			break
		}
		pos, size = at, n
		at += int64(n)
	}
	if pos < 0 {
		return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: fmt.Errorf("no batch holds offset %d", target)}
	}
	return pos, size, nil
}

// closeUnshared closes the file of a sealed segment that no one else can
// see yet (recovery) and drops its indexes: the cache reopens it when read.
func (s *segment) closeUnshared() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.entries, s.times = nil, nil
}

// initTimes sets what the append path needs from the segments found at
// open: the greatest append time so far (append times never go back, also
// across a restart), and the active segment's age origin, its first batch's
// append time (so a restart does not make a segment young again).
// Recovery, before the partition is shared.
func (p *Partition) initTimes() {
	for _, s := range p.segs {
		p.lastAppend = max(p.lastAppend, s.lastTime.Load())
	}
	if last := p.active(); !last.empty() {
		last.origin = time.UnixMilli(last.firstTime.Load())
	}
}

// tooOld says whether the active segment seg must roll by age at wall
// time now: it has batches and its first is SegmentMaxAge old. Writer only.
func (p *Partition) tooOld(seg *segment, now time.Time) bool {
	return !seg.empty() && now.Sub(seg.origin) >= p.opts.SegmentMaxAge
}
