package logstore

import (
	"errors"
	"fmt"
	"math"
	"time"

	"logship/logstore/batch"
)

// GroupCheck decides whether batch i of AppendGroup is written, as a
// CheckFunc does for Append, under the same lock and with the same limits.
type GroupCheck func(i int, h *batch.Header) (write bool, err error)

// AppendGroup appends several batches to the partition, in order: each
// bs[i], already accepted by batch.Parse (hs[i] is its header), with
// check(i, hs[i]) as its check (nil: always write). The outcome is the one
// of Append called for each batch in turn (the same offsets, append
// times, rolls, indexes and results, written to res[i]), but the batches
// it writes go to disk in one vectored write per run of them that fits
// the active segment, rather than one write each: what a server gains by
// grouping the batches it has already read.
//
// One difference in timing: a check runs before the batches accepted
// ahead of it in the group are written, so it must decide on what it was
// told before (the aggregator's dedup keeps its own state for the group),
// not on what is written.
//
// It returns how many batches it went through, n (res[:n] are their
// results), and the error that stopped it, if any: the batch at n is the
// one that failed, and neither it nor any after it was written. When a
// write fails, n is the first batch of that write (the ones its check
// accepted before it stay in res[:n] as not written, as Append would have
// left them had it failed at that batch): the write is cut back, or the
// partition fails when even that fails.
func (p *Partition) AppendGroup(bs [][]byte, hs []*batch.Header, check GroupCheck, res []Appended) (int, error) {
	if len(hs) != len(bs) || len(res) < len(bs) {
		panic(fmt.Sprintf("BUG: logstore: AppendGroup of %d batches, %d headers, %d results", len(bs), len(hs), len(res)))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	r := run{p: p, seg: p.active(), next: p.next, lastAppend: p.lastAppend}
	r.pos = r.seg.size.Load()
	for i, b := range bs {
		h := hs[i]
		res[i] = Appended{Next: r.next}
		if err := p.failure(); err != nil {
			return r.finish(res, i, err)
		}
		if len(b) != h.Size || h.Count < 1 || len(b) < batch.MinSize {
			return r.finish(res, i, fmt.Errorf("logstore: append: batch of %d bytes, header says %d bytes and %d records", len(b), h.Size, h.Count))
		}
		if h.Topic != p.topic {
			return r.finish(res, i, fmt.Errorf("logstore: append: batch of topic %q to partition %s-%d", h.Topic, p.topic, p.id))
		}
		if check != nil {
			write, err := check(i, h)
			if err != nil {
				return r.finish(res, i, err)
			}
			if !write {
				continue
			}
		}
		wall := p.opts.Now()
		end := r.pos + r.size
		if (end > fileHeaderSize && end+int64(len(b)) > p.opts.SegmentBytes) || r.next-r.seg.base > math.MaxUint32 || r.tooOld(wall) {
			if err := r.flush(); err != nil {
				return r.failed(res, err)
			}
			if err := p.roll(); err != nil {
				return r.finish(res, i, err)
			}
			r.seg, r.pos = p.active(), fileHeaderSize
		}
		base, now := r.next, max(wall.UnixMilli(), r.lastAppend)
		batch.Stamp(b, base, now)
		h.BaseOffset, h.AppendTime = base, now
		r.add(i, b, h, wall)
		r.next, r.lastAppend = base+int64(h.Count), now
		res[i] = Appended{Written: true, BaseOffset: base, Next: r.next}
	}
	return r.finish(res, len(bs), nil)
}

// run is AppendGroup's batches stamped but not yet written (in the
// partition's iov, their headers in iovHs): they follow each other at pos
// in seg. The partition's own state (next, lastAppend,
// the segment's size and indexes, the source table, the end) moves only
// once they are written (flush); next and lastAppend here run ahead.
type run struct {
	p          *Partition
	seg        *segment
	pos        int64 // where the run starts in seg
	size       int64 // bytes in the run
	first      int   // the group index of the run's first batch
	next       int64
	lastAppend int64
	wall       time.Time // the clock when the run's first batch was added
}

// tooOld is Partition.tooOld for the segment with the run in it: a run
// that begins an empty segment is its first batch, as Append would have
// written it already.
func (r *run) tooOld(now time.Time) bool {
	if r.seg.empty() && len(r.p.iov) > 0 {
		return now.Sub(r.wall) >= r.p.opts.SegmentMaxAge
	}
	return r.p.tooOld(r.seg, now)
}

// add puts batch i, stamped, at the end of the run.
func (r *run) add(i int, b []byte, h *batch.Header, wall time.Time) {
	p := r.p
	if len(p.iov) == 0 {
		r.first, r.wall = i, wall
	}
	p.iov = append(p.iov, b)
	p.iovHs = append(p.iovHs, h)
	r.size += int64(len(b))
}

// flush writes the run and moves the partition's state past it. On error
// nothing of the run is in the log: the write is cut back, or the
// partition fails when even that fails.
func (r *run) flush() error {
	p := r.p
	if len(p.iov) == 0 {
		return nil
	}
	defer r.reset()
	seg := r.seg
	if err := writeAtv(seg.f, p.iov, r.pos); err != nil {
		err = fmt.Errorf("logstore: write %s at %d: %w", seg.path, r.pos, err)
		// A failed write may have left part of the run behind. Cut it, or,
		// when even that fails, give up on the partition: the next write
		// would land after garbage.
		if terr := seg.f.Truncate(r.pos); terr != nil {
			return p.fail(errors.Join(err, terr))
		}
		return err
	}
	if seg.empty() {
		seg.origin = r.wall
	}
	pos := r.pos
	for j, h := range p.iovHs {
		seg.noteBatch(pos, h, p.opts.IndexIntervalBytes)
		pos += int64(len(p.iov[j]))
		seg.size.Store(pos)
		p.lastAppend = h.AppendTime
		p.next = h.BaseOffset + int64(h.Count)
		p.sources.apply(h)
	}
	p.written.Store(p.next)
	if p.opts.Fsync != FsyncAlways {
		p.advanceEnd(endPoint{off: p.next, seg: seg, pos: pos})
	}
	r.pos = pos
	return nil
}

// reset empties the run, keeping the buffers' room for the next.
func (r *run) reset() {
	p := r.p
	clear(p.iov)
	clear(p.iovHs)
	p.iov, p.iovHs, r.size = p.iov[:0], p.iovHs[:0], 0
}

// finish writes what the run holds and returns AppendGroup's result: n
// and err, or what failed returns when the write fails.
func (r *run) finish(res []Appended, n int, err error) (int, error) {
	if ferr := r.flush(); ferr != nil {
		return r.failed(res, ferr)
	}
	return n, err
}

// failed is AppendGroup's result after the run's write failed: its first
// batch and err, with that batch and every one after it not written, at
// the log's written end (the run's batches, and those turned down among
// them, were told otherwise).
func (r *run) failed(res []Appended, err error) (int, error) {
	for j := r.first; j < len(res); j++ {
		res[j] = Appended{Next: r.p.next}
	}
	return r.first, err
}
