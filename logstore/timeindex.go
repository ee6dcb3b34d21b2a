package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"logship/logstore/batch"
)

// timeEntry maps an append time (unix ms) to the first batch of a segment,
// by offset relative to the segment's base, whose append time it is. See
// doc.go, "Time index file".
type timeEntry struct {
	t   int64
	rel uint32
}

// errTimeIndex is wrapped by every reason a time index file is refused.
var errTimeIndex = errors.New("bad time index")

// appendTimeEntry appends the 16-byte encoding of e to dst.
func appendTimeEntry(dst []byte, e timeEntry) []byte {
	var b [timeEntrySize]byte
	binary.BigEndian.PutUint64(b[timeEntryOffTime:], uint64(e.t))
	binary.BigEndian.PutUint32(b[timeEntryOffRel:], e.rel)
	binary.BigEndian.PutUint32(b[timeEntryOffCRC:], batch.Checksum(b[:timeEntryOffCRC]))
	return append(dst, b[:]...)
}

// decodeTimeEntry decodes one entry, checking its CRC. A short b is an
// error, never a panic.
func decodeTimeEntry(b []byte) (timeEntry, error) {
	if len(b) < timeEntrySize {
		return timeEntry{}, fmt.Errorf("%w: entry of %d bytes", errTimeIndex, len(b))
	}
	if got, want := binary.BigEndian.Uint32(b[timeEntryOffCRC:]), batch.Checksum(b[:timeEntryOffCRC]); got != want {
		return timeEntry{}, fmt.Errorf("%w: entry crc %08x, want %08x", errTimeIndex, got, want)
	}
	return timeEntry{
		t:   int64(binary.BigEndian.Uint64(b[timeEntryOffTime:])),
		rel: binary.BigEndian.Uint32(b[timeEntryOffRel:]),
	}, nil
}

// encodeTimeIndex returns the whole time index file for a segment.
func encodeTimeIndex(base int64, entries []timeEntry) []byte {
	b := make([]byte, fileHeaderSize, fileHeaderSize+len(entries)*timeEntrySize)
	copy(b[hdrOffMagic:], timeIndexMagic)
	b[hdrOffVersion] = timeIndexVersion
	binary.BigEndian.PutUint64(b[hdrOffBase:], uint64(base))
	binary.BigEndian.PutUint32(b[hdrOffCount:], uint32(len(entries)))
	binary.BigEndian.PutUint32(b[hdrOffCRC:], batch.Checksum(b[:hdrOffCRC]))
	for _, e := range entries {
		b = appendTimeEntry(b, e)
	}
	return b
}

// decodeTimeIndex checks a whole time index file for the segment starting
// at base and returns its entries: the header (with the entry count, so
// that a file cut at an entry boundary is refused too), every entry's CRC,
// a first entry at relative offset 0, and times and relative offsets that
// both increase strictly. It never panics.
func decodeTimeIndex(data []byte, base int64) ([]timeEntry, error) {
	if err := checkFileHeader(data, timeIndexMagic, timeIndexVersion, base); err != nil {
		return nil, fmt.Errorf("%w: %w", errTimeIndex, err)
	}
	count := int64(binary.BigEndian.Uint32(data[hdrOffCount:]))
	body := data[fileHeaderSize:]
	if int64(len(body)) != count*timeEntrySize {
		return nil, fmt.Errorf("%w: %d bytes of entries, the header says %d entries", errTimeIndex, len(body), count)
	}
	entries := make([]timeEntry, 0, count)
	for i := 0; i < len(body); i += timeEntrySize {
		e, err := decodeTimeEntry(body[i:])
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i/timeEntrySize, err)
		}
		if n := len(entries); (n == 0 && e.rel != 0) || (n > 0 && (e.t <= entries[n-1].t || e.rel <= entries[n-1].rel)) {
			return nil, fmt.Errorf("%w: entry %d (%d at %d) out of order", errTimeIndex, i/timeEntrySize, e.t, e.rel)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// batchPrefix reads and checks the prefix of the batch at pos of seg,
// whose file the caller holds open.
func (s *segment) batchPrefix(pos int64, prefix *[batch.PrefixSize]byte) (size int, err error) {
	if err := readFullAt(s.f, prefix[:], pos); err != nil {
		return 0, fmt.Errorf("logstore: read %s at %d: %w", s.path, pos, err)
	}
	size, err = batch.CheckPrefix(prefix[:])
	if err != nil {
		return 0, &CorruptionError{Path: s.path, Offset: pos, Err: err}
	}
	return size, nil
}

// loadSealedTimes sets the time metadata of a sealed segment found at
// open, which ends at offset nextBase and whose file is open (recovery
// calls it right after verifySealed or verifyTrusted). When verifySealed
// rebuilt the indexes, the metadata is already set. Otherwise it reads
// only the time index's header and its first and last entries, whatever
// the segment's size, and checks them against the segment: the first must
// be the first batch's append time, the last the last batch's (found by a
// walk over batch prefixes from the last offset index entry in
// seg.entries). The other entries are checked when the segment cache
// loads the index for a lookup (and rebuilt then if they fail). If
// anything is wrong here, both indexes are rebuilt from a scan of the
// segment.
func (p *Partition) loadSealedTimes(seg *segment, nextBase int64) error {
	seg.next.Store(nextBase)
	if !seg.empty() {
		return nil // rebuilt by verifySealed, time index file included
	}
	tpath := timeIndexPathOf(seg.path)
	times, err := p.readTimeIndexEnds(tpath, seg.base)
	if err == nil {
		err = seg.checkTimes(times)
	}
	if err == nil {
		seg.firstTime.Store(times[0].t)
		seg.lastTime.Store(times[len(times)-1].t)
		return nil
	}
	if !errors.Is(err, errTimeIndex) && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	p.log.Warn("rebuilding time index", "file", tpath, "err", err)
	return p.rebuildIndexes(seg, false)
}

// readTimeIndexEnds reads the header and the first and last entries of
// the time index at path, checking the header (and that the file holds
// exactly the entries it counts), the entries' CRCs and their order. It
// returns those entries: one or two.
func (p *Partition) readTimeIndexEnds(path string, base int64) ([]timeEntry, error) {
	f, err := p.fsys.OpenRW(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, fileHeaderSize)
	if size < fileHeaderSize {
		return nil, fmt.Errorf("%w: %w: %d bytes", errTimeIndex, errShortHeader, size)
	}
	if err := readFullAt(f, hdr, 0); err != nil {
		return nil, err
	}
	if err := checkFileHeader(hdr, timeIndexMagic, timeIndexVersion, base); err != nil {
		return nil, fmt.Errorf("%w: %w", errTimeIndex, err)
	}
	count := int64(binary.BigEndian.Uint32(hdr[hdrOffCount:]))
	if size != fileHeaderSize+count*timeEntrySize || count == 0 {
		return nil, fmt.Errorf("%w: %d bytes, the header says %d entries", errTimeIndex, size, count)
	}
	var out []timeEntry
	for _, at := range []int64{fileHeaderSize, size - timeEntrySize} {
		b := make([]byte, timeEntrySize)
		if err := readFullAt(f, b, at); err != nil {
			return nil, err
		}
		e, err := decodeTimeEntry(b)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if count == 1 {
			break
		}
	}
	if out[0].rel != 0 || (len(out) == 2 && (out[1].t <= out[0].t || out[1].rel <= out[0].rel)) {
		return nil, fmt.Errorf("%w: first entry (%d at %d), last (%d at %d)", errTimeIndex, out[0].t, out[0].rel, out[len(out)-1].t, out[len(out)-1].rel)
	}
	return out, nil
}

// checkTimes checks a decoded time index against the segment's batches.
func (s *segment) checkTimes(times []timeEntry) error {
	if len(times) == 0 {
		return fmt.Errorf("%w: no entry for a segment with batches", errTimeIndex)
	}
	var prefix [batch.PrefixSize]byte
	if _, err := s.batchPrefix(fileHeaderSize, &prefix); err != nil {
		return err
	}
	if t := batch.AppendTime(prefix[:]); t != times[0].t {
		return fmt.Errorf("%w: first entry %d, first batch appended at %d", errTimeIndex, times[0].t, t)
	}
	pos := int64(fileHeaderSize)
	s.idxMu.RLock()
	if n := len(s.entries); n > 0 {
		pos = int64(s.entries[n-1].pos)
	}
	s.idxMu.RUnlock()
	size := s.size.Load()
	var lastTime, lastBase int64
	for pos < size {
		n, err := s.batchPrefix(pos, &prefix)
		if err != nil {
			return err
		}
		lastTime, lastBase = batch.AppendTime(prefix[:]), batch.BaseOffset(prefix[:])
		pos += int64(n)
	}
	last := times[len(times)-1]
	if last.t != lastTime || s.base+int64(last.rel) > lastBase {
		return fmt.Errorf("%w: last entry (%d at %d), last batch (%d at %d)", errTimeIndex, last.t, last.rel, lastTime, lastBase-s.base)
	}
	return nil
}

// rebuildIndexes rebuilds a sealed segment's indexes from a scan of its
// file (open) and writes them; when keepEntries, the rebuilt entries stay
// in memory, otherwise only the metadata is kept. A scan that does not
// reach the end of the file cleanly is a *CorruptionError.
func (p *Partition) rebuildIndexes(seg *segment, keepEntries bool) error {
	size := seg.size.Load()
	tmp := newSegment(seg.base, seg.path, seg.f, size)
	res := scanSegment(seg.f, fileHeaderSize, seg.base, size, func(pos int64, h *batch.Header) {
		tmp.noteBatch(pos, h, p.opts.IndexIntervalBytes)
	})
	if res.ioErr != nil {
		return fmt.Errorf("read %s: %w", seg.path, res.ioErr)
	}
	if res.damage != nil {
		return &CorruptionError{Path: seg.path, Offset: res.pos, Err: res.damage}
	}
	tmp.sealTimes()
	seg.firstTime.Store(tmp.firstTime.Load())
	seg.lastTime.Store(tmp.lastTime.Load())
	seg.lastRel = tmp.lastRel
	if err := writeIndexFiles(p.fsys, seg.path, seg.base, tmp.entries, tmp.times); err != nil {
		return err
	}
	if keepEntries {
		seg.idxMu.Lock()
		seg.entries, seg.times = tmp.entries, tmp.times
		seg.idxMu.Unlock()
	}
	return nil
}

// OffsetForTime returns the offset of the first batch whose append time
// is at or after t: the offset to replay from to see everything appended
// since t. It returns End() when no batch that readers can see is that
// recent. Append times, not the records' own timestamps, decide: they are
// monotonic per partition (see doc.go, "Time index file"), so the answer
// is exact even when the records' clocks are not. Safe for concurrent use.
func (p *Partition) OffsetForTime(t time.Time) (int64, error) {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++ // the first whole millisecond at or after t
	}
	p.rw.RLock()
	defer p.rw.RUnlock()
	if p.rclosed {
		return 0, ErrClosed
	}
	end := p.endPoint()
	// Last append times grow from segment to segment; an empty segment
	// can only be the last.
	i := sort.Search(len(p.segs), func(i int) bool {
		lt := p.segs[i].lastTime.Load()
		return lt == noTime || lt >= ms
	})
	if i == len(p.segs) {
		return end.off, nil
	}
	seg := p.segs[i]
	if seg.base >= end.off || seg.empty() {
		return end.off, nil
	}
	if seg.firstTime.Load() >= ms {
		return seg.base, nil
	}
	if err := p.cache.acquire(seg); err != nil {
		return 0, err
	}
	defer p.cache.release(seg)
	if err := p.cache.loadTimes(seg); err != nil {
		return 0, err
	}
	limit := seg.size.Load()
	if seg == end.seg {
		limit = end.pos
	}
	off, found, err := seg.findTime(ms, limit)
	if err != nil || found {
		return off, err
	}
	if seg == end.seg {
		return end.off, nil
	}
	return seg.next.Load(), nil // only if the time index lied: the next segment's first batch
}

// findTime returns the base offset of the first batch of seg at or after
// append time ms, looking only below byte limit. The time index narrows
// the search to the batches between two entries; a binary search over the
// offset index entries in that range, reading one batch prefix each,
// narrows it to one index interval; a walk over batch prefixes ends it.
// Caller holds seg acquired.
func (s *segment) findTime(ms, limit int64) (off int64, found bool, err error) {
	s.idxMu.RLock()
	times, entries := s.times, s.entries // append-only: the prefixes stay valid unlocked
	s.idxMu.RUnlock()
	j := sort.Search(len(times), func(i int) bool { return times[i].t >= ms })
	loRel, hiRel := int64(0), int64(1)<<40
	if j > 0 {
		loRel = int64(times[j-1].rel)
	}
	if j < len(times) {
		hiRel = int64(times[j].rel)
	}
	// Offset index entries strictly inside (loRel, hiRel): the answer is
	// at or after the first whose batch is recent enough.
	a := sort.Search(len(entries), func(i int) bool { return int64(entries[i].rel) > loRel })
	b := sort.Search(len(entries), func(i int) bool { return int64(entries[i].rel) >= hiRel })
	var prefix [batch.PrefixSize]byte
	var ioErr error
	c := a + sort.Search(b-a, func(k int) bool {
		e := entries[a+k]
		if ioErr != nil || int64(e.pos) >= limit {
			return true
		}
		if _, err := s.batchPrefix(int64(e.pos), &prefix); err != nil {
			ioErr = err
			return true
		}
		return batch.AppendTime(prefix[:]) >= ms
	})
	if ioErr != nil {
		return 0, false, ioErr
	}
	// Walk from the entry before c (or from loRel's batch) to the first
	// batch recent enough.
	pos, _ := s.floor(s.base + loRel)
	if c > a {
		pos = int64(entries[c-1].pos)
	}
	for pos < limit {
		n, err := s.batchPrefix(pos, &prefix)
		if err != nil {
			return 0, false, err
		}
		if batch.AppendTime(prefix[:]) >= ms {
			return batch.BaseOffset(prefix[:]), true, nil
		}
		pos += int64(n)
	}
	return 0, false, nil
}
