package logstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"logship/logstore/batch"
)

// Recovery. The policy is written down in doc.go ("Recovery"); this file
// implements it. Recovery runs before the partition is shared, so it needs
// no locks.

// scanResult says how far a scan of a segment got.
type scanResult struct {
	pos  int64 // byte just past the last good batch
	next int64 // offset just past the last good batch
	// damage says why the scan stopped before its limit: a torn or damaged
	// batch at pos. nil when the scan reached the limit exactly.
	damage error
	// ioErr is a read error: nothing can be concluded about the data, and
	// recovery must not cut anything.
	ioErr error
}

// scanSegment reads the batches of f from byte pos up to limit, expecting
// the first one to have base offset next. It checks every batch fully:
// batch.CheckPrefix, batch.Parse (both CRCs) and contiguous base offsets,
// and calls fn (if not nil) for each good one, in order.
func scanSegment(f io.ReaderAt, pos, next, limit int64, fn func(pos int64, h *batch.Header)) scanResult {
	r := bufio.NewReaderSize(io.NewSectionReader(f, pos, limit-pos), 256<<10)
	var buf []byte
	res := scanResult{pos: pos, next: next}
	for res.pos < limit {
		left := limit - res.pos
		if left < batch.PrefixSize {
			res.damage = fmt.Errorf("%w: %d bytes left, a batch prefix needs %d", batch.ErrTruncated, left, batch.PrefixSize)
			return res
		}
		prefix, err := r.Peek(batch.PrefixSize)
		if err != nil {
			res.ioErr = err
			return res
		}
		size, err := batch.CheckPrefix(prefix)
		if err != nil {
			res.damage = err
			return res
		}
		if int64(size) > left {
			res.damage = fmt.Errorf("%w: batch of %d bytes, %d left in the file", batch.ErrTruncated, size, left)
			return res
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		if _, err := io.ReadFull(r, buf[:size]); err != nil {
			res.ioErr = err
			return res
		}
		h, err := batch.Parse(buf[:size])
		if err != nil {
			res.damage = err
			return res
		}
		if h.BaseOffset != res.next {
			res.damage = fmt.Errorf("%w: base offset %d, want %d", batch.ErrCorrupt, h.BaseOffset, res.next)
			return res
		}
		if fn != nil {
			fn(res.pos, &h)
		}
		res.pos += int64(size)
		res.next = h.NextOffset()
	}
	return res
}

// openPartition opens the partition directory dir (creating it and a first
// segment if needed) and recovers it. On error nothing is left open.
//
// rp is what the checkpoint says of the partition, nil when it says
// nothing (see doc.go, "Recovery").
func openPartition(opts *Options, fsys fileSystem, cache *segCache, dir, topic string, id int, rp *recoveryPoint) (_ *Partition, err error) {
	p := &Partition{
		topic: topic,
		id:    id,
		dir:   dir,
		opts:  opts,
		fsys:  fsys,
		cache: cache,
		log:   opts.Logger.With("topic", topic, "partition", id),
		endCh: make(chan struct{}),
		// Replaced by recovery (loadSources).
		sources: newSourceTable(),
	}
	defer func() {
		if err != nil {
			for _, s := range p.segs {
				if s.f != nil {
					s.f.Close()
				}
			}
			err = fmt.Errorf("logstore: open partition %s-%d: %w", topic, id, err)
		}
	}()
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, err
	}
	bases, snaps, err := p.listDir()
	if err != nil {
		return nil, err
	}
	bases, freshBase, err := p.dropTornLast(bases, rp)
	if err != nil {
		return nil, err
	}
	// Sealed segments are checked one at a time and closed again (the
	// cache opens them when read), so that Open never holds more than one
	// sealed segment's file open however many there are.
	for i, base := range bases {
		if err := p.openSegment(base); err != nil {
			return nil, err
		}
		if i == len(bases)-1 {
			break
		}
		seg := p.active()
		verify := p.verifySealed
		if rp != nil && base < rp.base {
			verify = p.verifyTrusted
		}
		if err := verify(seg, bases[i+1]); err != nil {
			return nil, err
		}
		if err := p.loadSealedTimes(seg, bases[i+1]); err != nil {
			return nil, err
		}
		seg.closeUnshared()
	}
	if len(p.segs) == 0 {
		seg, err := createSegment(fsys, dir, freshBase)
		if err != nil {
			return nil, err
		}
		p.segs = append(p.segs, seg)
		if err := fsys.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	last := p.active()
	last.refs = 1 // pinned while active
	// tail collects the source state of the last segment's batches as the
	// scan finds them, so that loadSources does not read them again; nil
	// when the segment is not scanned.
	var tail *sourceTable
	if rp == nil || !rp.clean || !p.loadCleanTail(last, rp) {
		tail = newSourceTable()
		if err := p.recoverTail(last, rp, tail); err != nil {
			return nil, err
		}
	}
	if rp != nil && p.next < rp.next {
		// Data the checkpoint saw fsynced is gone: not a torn write.
		return nil, &CorruptionError{Path: last.path, Offset: last.size.Load(), Err: fmt.Errorf(
			"%w: the log ends at offset %d, the checkpoint says offset %d of segment %d was durable (remove %s to open what is left)",
			batch.ErrCorrupt, p.next, rp.next, rp.base, filepath.Join(filepath.Dir(p.dir), checkpointName))}
	}
	// Whatever is in the page cache after a process crash may not be on
	// disk yet: make it so before calling it durable.
	if err := last.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", last.path, err)
	}
	p.initTimes()
	p.start.Store(p.segs[0].base)
	p.written.Store(p.next)
	p.synced = p.next
	p.end = endPoint{off: p.next, seg: last, pos: last.size.Load()}
	p.durable = p.end
	if err := p.loadSources(snaps, tail, rp); err != nil {
		return nil, err
	}
	return p, nil
}

// listDir returns the base offsets of the segments in p.dir and the
// offsets of the snapshots, sorted, removes leftover temporary files and
// logs unrelated entries.
func (p *Partition) listDir() (bases, snaps []int64, _ error) {
	ents, err := p.fsys.ReadDir(p.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		path := filepath.Join(p.dir, e.Name)
		if base, ok := parseSegmentName(e.Name); ok && !e.IsDir {
			bases = append(bases, base)
			continue
		}
		if off, ok := parseSnapshotName(e.Name); ok && !e.IsDir {
			snaps = append(snaps, off)
			continue
		}
		switch {
		case e.IsDir:
		case strings.HasSuffix(e.Name, tmpSuffix):
			// An index write interrupted before its rename: never trusted.
			if err := p.fsys.Remove(path); err != nil {
				return nil, nil, err
			}
			p.log.Info("removed leftover temporary file", "file", path)
			continue
		case strings.HasSuffix(e.Name, indexSuffix), strings.HasSuffix(e.Name, timeIndexSuffix), strings.Contains(e.Name, logSuffix+brokenSuffix):
			continue
		}
		p.log.Warn("ignoring unexpected entry in partition directory", "file", path)
	}
	return bases, snaps, nil // ReadDir sorts by name, and zero-padded names sort by offset
}

// dropTornLast removes the last segments while they are torn at creation:
// no longer than a header, with a bad header. roll fsyncs a new segment's
// header before any batch goes in, so no acknowledged batch can be lost
// here. Their bytes are kept as .broken. When no segment is left, freshBase
// is where the new first segment must start: the torn one's base. A
// segment at or before the recovery point rp (nil: none) is never dropped:
// its header was durable, so damage to it is reported by openSegment.
func (p *Partition) dropTornLast(bases []int64, rp *recoveryPoint) (_ []int64, freshBase int64, _ error) {
	for len(bases) > 0 {
		base := bases[len(bases)-1]
		if rp != nil && base <= rp.base {
			return bases, 0, nil
		}
		path := filepath.Join(p.dir, segmentName(base))
		data, err := p.readSmall(path, fileHeaderSize)
		if err != nil {
			return nil, 0, err
		}
		if data == nil || checkFileHeader(data, segmentMagic, segmentVersion, base) == nil {
			return bases, 0, nil
		}
		broken, err := saveBroken(p.fsys, path, bytesReaderAt(data), 0, int64(len(data)))
		if err != nil {
			return nil, 0, err
		}
		for _, name := range []string{path, indexPathOf(path)} {
			if err := p.fsys.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, 0, err
			}
		}
		if err := p.fsys.SyncDir(p.dir); err != nil {
			return nil, 0, err
		}
		p.log.Warn("removed segment torn at creation", "file", path, "bytes", len(data), "broken", broken)
		bases, freshBase = bases[:len(bases)-1], base
	}
	return bases, freshBase, nil
}

// readSmall returns the content of path if it is at most max bytes long,
// and nil otherwise.
func (p *Partition) readSmall(path string, max int64) ([]byte, error) {
	f, err := p.fsys.OpenRW(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil || size > max {
		return nil, err
	}
	data := make([]byte, size)
	if err := readFullAt(f, data, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// openSegment opens the segment file for base and checks its header.
func (p *Partition) openSegment(base int64) error {
	path := filepath.Join(p.dir, segmentName(base))
	f, err := p.fsys.OpenRW(path)
	if err != nil {
		return err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return err
	}
	hdr := make([]byte, min(size, fileHeaderSize))
	if err := readFullAt(f, hdr, 0); err != nil {
		f.Close()
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := checkFileHeader(hdr, segmentMagic, segmentVersion, base); err != nil {
		f.Close()
		return &CorruptionError{Path: path, Offset: 0, Err: err}
	}
	p.segs = append(p.segs, newSegment(base, path, f, size))
	return nil
}

// verifySealed checks an older segment that must end at offset nextBase.
// A valid index is trusted after a walk of the batches from its last entry
// to the end of the file; otherwise the whole segment is scanned, its index
// rebuilt, and any damage is a *CorruptionError.
func (p *Partition) verifySealed(seg *segment, nextBase int64) error {
	size := seg.size.Load()
	ipath := indexPathOf(seg.path)
	data, err := p.fsys.ReadFile(ipath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	why := "missing"
	if err == nil {
		entries, err := decodeIndex(data, seg.base, size)
		if err == nil {
			pos, next := int64(fileHeaderSize), seg.base
			if len(entries) > 0 {
				e := entries[len(entries)-1]
				pos, next = int64(e.pos), seg.base+int64(e.rel)
			}
			res := scanSegment(seg.f, pos, next, size, nil)
			if res.ioErr != nil {
				return fmt.Errorf("read %s: %w", seg.path, res.ioErr)
			}
			if res.damage == nil && res.next == nextBase {
				seg.entries = entries
				return nil
			}
			err = fmt.Errorf("%w: walk from the last entry stopped at byte %d, offset %d (next segment starts at %d): %v",
				errIndex, res.pos, res.next, nextBase, res.damage)
		}
		why = err.Error()
	}
	p.log.Warn("rebuilding index", "file", ipath, "err", why)
	res := scanSegment(seg.f, fileHeaderSize, seg.base, size, func(pos int64, h *batch.Header) {
		seg.noteBatch(pos, h, p.opts.IndexIntervalBytes)
	})
	if res.ioErr != nil {
		return fmt.Errorf("read %s: %w", seg.path, res.ioErr)
	}
	if res.damage != nil {
		return &CorruptionError{Path: seg.path, Offset: res.pos, Err: res.damage}
	}
	if res.next != nextBase {
		return &CorruptionError{Path: seg.path, Offset: res.pos,
			Err: fmt.Errorf("%w: segment ends at offset %d, the next one starts at %d", batch.ErrCorrupt, res.next, nextBase)}
	}
	return p.writeIndex(seg)
}

// recoverTail scans the last segment, cuts a torn or damaged tail (saving
// the cut bytes as .broken), rebuilds its index in memory and applies
// every batch to sources. Damage before the recovery point rp (nil: none)
// is not a torn write but a *CorruptionError, and nothing is cut.
func (p *Partition) recoverTail(seg *segment, rp *recoveryPoint, sources *sourceTable) error {
	size := seg.size.Load()
	res := scanSegment(seg.f, fileHeaderSize, seg.base, size, func(pos int64, h *batch.Header) {
		seg.noteBatch(pos, h, p.opts.IndexIntervalBytes)
		sources.apply(h)
	})
	if res.ioErr != nil {
		return fmt.Errorf("read %s: %w", seg.path, res.ioErr)
	}
	if res.damage != nil && rp != nil && rp.base == seg.base && res.pos < rp.pos {
		return &CorruptionError{Path: seg.path, Offset: res.pos, Err: fmt.Errorf(
			"%w (the checkpoint says the first %d bytes were durable)", res.damage, rp.pos)}
	}
	if res.damage != nil {
		cut := size - res.pos
		broken, err := saveBroken(p.fsys, seg.path, seg.f, res.pos, cut)
		if err != nil {
			return fmt.Errorf("save torn tail of %s: %w", seg.path, err)
		}
		if err := seg.f.Truncate(res.pos); err != nil {
			return fmt.Errorf("truncate %s: %w", seg.path, err)
		}
		p.log.Warn("truncated torn tail", "file", seg.path, "offset", res.pos, "bytes", cut,
			"broken", broken, "next_offset", res.next, "err", res.damage)
		seg.size.Store(res.pos)
	}
	p.next = res.next
	return nil
}
