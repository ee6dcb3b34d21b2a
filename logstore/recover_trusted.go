package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"

	"logship/logstore/batch"
)

// Recovery of what a checkpoint vouches for (doc.go, "Recovery"): sealed
// segments before the recovery point, and, after a clean shutdown, the
// last segment too. Nothing here reads a batch body, nor anything whose
// size grows with the segment: a trusted sealed segment's index header and
// last entry must check (the other entries are checked by the segment
// cache when a reader first loads the index, which rebuilds it if they do
// not), and a walk over the batch prefixes from that entry must reach the
// exact end of the file with contiguous offsets. Anything else falls back
// to the checks of a segment that nothing vouches for. Recovery runs
// before the partition is shared, so it needs no locks.

// walkReadSize is how much of a batch a prefix walk reads: the prefix
// (checked by its header CRC) and the fields through the record count
// (bytes 29 to 34, see batch/doc.go), which the body CRC covers but a
// walk does not check: a wrong count shows as a gap in the offsets.
const walkReadSize = batch.PrefixSize + 6

// walkResult is where a prefix walk got to.
type walkResult struct {
	pos, next int64 // byte and offset just past the last batch walked
	lastBase  int64 // base offset of the last batch walked; -1 if none
	lastTime  int64 // its append time
	err       error // why the walk stopped before its limit, or a read error
}

// walkPrefixes walks the batches of f from byte pos, expecting the first
// to start at offset next, up to limit, reading only walkReadSize bytes of
// each: the sizes must chain to limit exactly and the base offsets must be
// contiguous.
func walkPrefixes(f io.ReaderAt, pos, next, limit int64) walkResult {
	w := walkResult{pos: pos, next: next, lastBase: -1}
	var buf [walkReadSize]byte
	for w.pos < limit {
		if limit-w.pos < walkReadSize {
			w.err = fmt.Errorf("%w: %d bytes left at byte %d", batch.ErrTruncated, limit-w.pos, w.pos)
			return w
		}
		if err := readFullAt(f, buf[:], w.pos); err != nil {
			w.err = err
			return w
		}
		n, err := batch.CheckPrefix(buf[:])
		if err != nil {
			w.err = fmt.Errorf("at byte %d: %w", w.pos, err)
			return w
		}
		base, count := batch.BaseOffset(buf[:]), int64(batch.Count(buf[:]))
		switch {
		case int64(n) > limit-w.pos:
			w.err = fmt.Errorf("%w: batch of %d bytes at byte %d, %d left", batch.ErrTruncated, n, w.pos, limit-w.pos)
		case base != w.next || count < 1:
			w.err = fmt.Errorf("%w: batch at byte %d has base offset %d and %d records, want base %d", batch.ErrCorrupt, w.pos, base, count, w.next)
		}
		if w.err != nil {
			return w
		}
		w.lastBase, w.lastTime = base, batch.AppendTime(buf[:])
		w.pos += int64(n)
		w.next = base + count
	}
	return w
}

// readTrustedIndex reads and decodes seg's offset index and walks the
// batch prefixes from its last entry to the end of the segment.
func (p *Partition) readTrustedIndex(seg *segment) ([]indexEntry, walkResult, error) {
	size := seg.size.Load()
	data, err := p.fsys.ReadFile(indexPathOf(seg.path))
	if err != nil {
		return nil, walkResult{}, err
	}
	entries, err := decodeIndex(data, seg.base, size)
	if err != nil {
		return nil, walkResult{}, err
	}
	pos, next := int64(fileHeaderSize), seg.base
	if len(entries) > 0 {
		e := entries[len(entries)-1]
		pos, next = int64(e.pos), seg.base+int64(e.rel)
	}
	w := walkPrefixes(seg.f, pos, next, size)
	if w.err != nil {
		return nil, w, fmt.Errorf("%w: walk from the last entry: %w", errIndex, w.err)
	}
	return entries, w, nil
}

// readIndexTail reads the header and the last entry of seg's offset
// index and checks them: CRCs, a whole number of entries, and a last entry
// that points inside the segment. It returns the entries to walk from:
// none, or the last one.
func (p *Partition) readIndexTail(seg *segment) ([]indexEntry, error) {
	path := indexPathOf(seg.path)
	f, err := p.fsys.OpenRW(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < fileHeaderSize || (size-fileHeaderSize)%indexEntrySize != 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes", errIndex, path, size)
	}
	buf := make([]byte, fileHeaderSize)
	if err := readFullAt(f, buf, 0); err != nil {
		return nil, err
	}
	if err := checkFileHeader(buf, indexMagic, indexVersion, seg.base); err != nil {
		return nil, fmt.Errorf("%w: %w", errIndex, err)
	}
	if size == fileHeaderSize {
		return nil, nil
	}
	if err := readFullAt(f, buf[:indexEntrySize], size-indexEntrySize); err != nil {
		return nil, err
	}
	e, err := decodeIndexEntry(buf)
	if err != nil {
		return nil, err
	}
	if e.rel == 0 || e.pos <= fileHeaderSize || int64(e.pos)+batch.PrefixSize > seg.size.Load() {
		return nil, fmt.Errorf("%w: last entry (%d at %d) in a segment of %d bytes", errIndex, e.rel, e.pos, seg.size.Load())
	}
	return []indexEntry{e}, nil
}

// verifyTrusted checks a sealed segment before the recovery point, which
// must end at offset nextBase, reading neither a batch body nor the whole
// index. On success seg.entries holds only the index's last entry, for the
// time index check that follows (loadSealedTimes walks from it); recovery
// then drops it with the file (closeUnshared), and the cache loads the
// whole index, checking every entry, when a reader needs it. When the
// check fails, the segment gets the full checks of verifySealed (which
// rebuild its index, or report damage as a *CorruptionError).
func (p *Partition) verifyTrusted(seg *segment, nextBase int64) error {
	last, err := p.readIndexTail(seg)
	if err == nil {
		pos, next := int64(fileHeaderSize), seg.base
		if len(last) > 0 {
			pos, next = int64(last[0].pos), seg.base+int64(last[0].rel)
		}
		w := walkPrefixes(seg.f, pos, next, seg.size.Load())
		switch {
		case w.err != nil:
			err = fmt.Errorf("%w: walk from the last entry: %w", errIndex, w.err)
		case w.next != nextBase:
			err = fmt.Errorf("%w: segment ends at offset %d, the next one starts at %d", errIndex, w.next, nextBase)
		}
	}
	if err == nil {
		seg.entries = last
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		p.log.Warn("segment before the recovery point failed its check; verifying it", "file", seg.path, "err", err)
	}
	return p.verifySealed(seg, nextBase)
}

// loadCleanTail sets up the last segment from its index files, as a clean
// Close left it, without scanning it: the checkpoint must name it with its
// exact size, its offset index must decode and a prefix walk from its last
// entry must end at the checkpoint's offset, and its time index must
// decode and agree with its first and last batches. It returns false
// (logged) when anything disagrees; the caller then recovers the segment
// by a scan, as after an unclean shutdown.
func (p *Partition) loadCleanTail(seg *segment, rp *recoveryPoint) bool {
	size := seg.size.Load()
	err := func() error {
		if seg.base != rp.base || size != rp.pos {
			return fmt.Errorf("the checkpoint says segment %d of %d bytes, the last segment is %d of %d bytes", rp.base, rp.pos, seg.base, size)
		}
		entries, w, err := p.readTrustedIndex(seg)
		if err != nil {
			return err
		}
		if w.next != rp.next {
			return fmt.Errorf("the segment ends at offset %d, the checkpoint says %d", w.next, rp.next)
		}
		data, err := p.fsys.ReadFile(timeIndexPathOf(seg.path))
		if err != nil {
			return err
		}
		times, err := decodeTimeIndex(data, seg.base)
		if err != nil {
			return err
		}
		seg.entries = entries
		if size == fileHeaderSize {
			if len(times) != 0 {
				return fmt.Errorf("%w: %d entries for an empty segment", errTimeIndex, len(times))
			}
		} else if err := seg.checkTimes(times); err != nil {
			return err
		}
		// What noteBatch would have left after appending every batch.
		seg.times = times
		if len(times) > 0 {
			seg.firstTime.Store(times[0].t)
			seg.lastTime.Store(w.lastTime)
		}
		seg.next.Store(w.next)
		if w.lastBase >= 0 { // the walk covers at least the last batch, when there is one
			seg.lastRel = w.lastBase - seg.base
		}
		seg.sinceIndex = size - fileHeaderSize
		if len(entries) > 0 {
			seg.sinceIndex = size - int64(entries[len(entries)-1].pos)
		}
		p.next = w.next
		return nil
	}()
	if err != nil {
		seg.entries, seg.times = nil, nil
		p.log.Warn("clean shutdown state of the last segment unusable; scanning it", "file", seg.path, "err", err)
		return false
	}
	return true
}
