package logstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"logship/logstore/batch"
)

// Partition is one topic partition: an ordered, append-only sequence of
// batches spread over segments. All methods are safe for concurrent use.
//
// Locks, always taken in this order (never the other way round):
//
//	mu      the writer's lock: Append, roll, the start of Close. Held while
//	        the active segment is written, never while waiting for fsync.
//	rw      the segment list and the open files: shared by readers while
//	        they read, exclusive to publish a new segment and to Close.
//	syncMu  group commit state (sync.go).
//	endMu   the durable end and the Wait channel.
type Partition struct {
	topic string
	id    int
	dir   string
	opts  *Options
	fsys  fileSystem
	log   *slog.Logger
	cache *segCache // the Store's: opens sealed segments lazily

	mu     sync.Mutex
	next   int64 // written end: the offset the next batch gets
	closed bool
	// lastAppend is the greatest append time stamped so far (unix ms):
	// append times never go back, even when the clock does.
	lastAppend int64
	// iov holds AppendGroup's batches for one vectored write, iovHs their
	// headers; kept for their room.
	iov   [][]byte
	iovHs []*batch.Header

	rw      sync.RWMutex
	segs    []*segment // by base offset; the last is the active one
	rclosed bool

	// start is the first offset in the log; retention moves it (under rw).
	start atomic.Int64
	// written mirrors next for lock-free dirty checks by the flusher.
	written atomic.Int64

	syncMu   sync.Mutex
	syncing  bool          // a goroutine is fsyncing (the leader)
	syncDone chan struct{} // closed when the leader is done
	synced   int64         // every offset below is fsynced
	failed   atomic.Pointer[error]

	// Recovery state (recover.go, sources.go, checkpoint.go).
	durable endPoint        // the recovery point: the furthest fsynced end, in the newest segment holding it; guarded by syncMu
	sources *sourceTable    // guarded by mu
	snaps   []int64         // offsets of the snapshot files, ascending; guarded by mu
	rolled  chan<- struct{} // the Store's checkpoint trigger; set before the partition is shared

	endMu     sync.Mutex
	end       endPoint
	endCh     chan struct{} // closed and replaced when end moves, if waited on
	endWaited bool          // someone holds endCh
	endClosed bool
}

// endPoint is the durable end of a partition: the offset, and where its
// bytes end (segment and position), so that readers can bound their reads
// without looking at the writer's state.
type endPoint struct {
	off int64
	seg *segment
	pos int64
}

// Topic is the partition's topic.
func (p *Partition) Topic() string { return p.topic }

// ID is the partition's number within its topic.
func (p *Partition) ID() int { return p.id }

// Start is the first offset still in the log.
func (p *Partition) Start() int64 { return p.start.Load() }

// End is the durable end: the offset the next record will get, counting
// only data that is durable per the fsync policy (with never and interval:
// everything written). Readers only ever see offsets below End.
func (p *Partition) End() int64 {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	return p.end.off
}

func (p *Partition) endPoint() endPoint {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	return p.end
}

// advanceEnd moves the durable end forward (never back) and wakes waiters.
func (p *Partition) advanceEnd(e endPoint) {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	if e.off <= p.end.off {
		return
	}
	p.end = e
	if p.endWaited {
		close(p.endCh)
		p.endCh = make(chan struct{})
		p.endWaited = false
	}
}

// failure returns the error that poisoned the partition, or nil.
func (p *Partition) failure() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// fail poisons the partition with the first error it is given.
func (p *Partition) fail(err error) error {
	err = fmt.Errorf("%w: %s-%d: %w", ErrFailed, p.topic, p.id, err)
	if p.failed.CompareAndSwap(nil, &err) {
		p.log.Error("partition failed: no more appends until restart", "err", err)
	}
	return p.failure()
}

// active returns the segment being appended to. Caller holds mu.
func (p *Partition) active() *segment { return p.segs[len(p.segs)-1] }

// CheckFunc decides, under the partition's write lock (so serialized with
// every append), whether a batch is written. The aggregator's dedup uses it.
// It must not call the partition's Append, WaitDurable, Sources or Close:
// they need that lock.
type CheckFunc func(h *batch.Header) (write bool, err error)

// Appended is the result of Append.
type Appended struct {
	Written    bool
	BaseOffset int64 // when Written
	Next       int64 // written end of the log after this call: pass it to WaitDurable
}

// Append takes one whole batch already accepted by batch.Parse (h is its
// header) and calls check (nil: always write). If told to write, it stamps
// the base offset and append time into b with batch.Stamp (b is modified in
// place, and h.BaseOffset and h.AppendTime are set to match), rolls to a
// new segment first if the batch would take the active one past
// SegmentBytes or when its first batch is SegmentMaxAge old, writes b and
// updates the indexes. The append time is the clock's, or the previous
// batch's when the clock went back (doc.go, "Time index file"). It does
// not wait for durability: that is WaitDurable, so a server can pipeline
// appends and acks. If check returns an error, nothing is written and the
// error is returned as is.
func (p *Partition) Append(b []byte, h *batch.Header, check CheckFunc) (Appended, error) {
	var gc GroupCheck
	if check != nil {
		gc = func(_ int, h *batch.Header) (bool, error) { return check(h) }
	}
	bs, hs, res := [1][]byte{b}, [1]*batch.Header{h}, [1]Appended{}
	_, err := p.AppendGroup(bs[:], hs[:], gc, res[:])
	return res[0], err
}

// roll seals the active segment and starts a new one at p.next. Caller
// holds mu. The order makes a crash at any step recoverable: the old
// segment is fsynced and its index written (tmp, fsync, rename, fsync dir)
// before the new segment exists, so only the last segment can be torn.
func (p *Partition) roll() error {
	old := p.active()
	size := old.size.Load()
	if err := old.f.Sync(); err != nil {
		return p.fail(fmt.Errorf("sync %s: %w", old.path, err))
	}
	p.markSynced(endPoint{off: p.next, seg: old, pos: size})
	if err := p.writeIndex(old); err != nil { // with the sealed segment's last time entry
		// The log itself is fine: refuse this append, retry the roll on the next.
		return fmt.Errorf("logstore: roll %s: %w", old.path, err)
	}
	seg, err := createSegment(p.fsys, p.dir, p.next)
	if err != nil {
		return fmt.Errorf("logstore: roll %s-%d: %w", p.topic, p.id, err)
	}
	if err := p.fsys.SyncDir(p.dir); err != nil {
		seg.f.Close()
		return p.fail(fmt.Errorf("sync dir %s: %w", p.dir, err))
	}
	p.rw.Lock()
	// In place when there is room: a reader that holds the old slice only
	// reads below its length, which this does not write (retention, which
	// drops a prefix, makes a new slice instead).
	p.segs = append(p.segs, seg)
	p.rw.Unlock()
	p.cache.seal(old)
	p.log.Debug("rolled segment", "offset", p.next, "file", seg.path)
	p.afterRoll(seg)
	return nil
}

// writeIndex replaces seg's index files (offset and time) with its
// in-memory entries. seg is open: active, or in recovery.
func (p *Partition) writeIndex(seg *segment) error {
	seg.sealTimes()
	seg.idxMu.RLock()
	entries, times := seg.entries, seg.times
	seg.idxMu.RUnlock()
	return writeIndexFiles(p.fsys, seg.path, seg.base, entries, times)
}

// Read returns whole stored batches, starting with the batch that contains
// offset, up to maxBytes (but always at least one whole batch if any exists
// at offset, however large), all below End and all from one segment, so it
// may return less than maxBytes at a segment boundary. offset == End returns
// (nil, nil); offset < Start or > End returns an *OutOfRangeError. The
// result is the caller's. Safe concurrently with Append and other Reads.
func (p *Partition) Read(offset int64, maxBytes int) ([]byte, error) {
	p.rw.RLock()
	defer p.rw.RUnlock()
	if p.rclosed {
		return nil, ErrClosed
	}
	end := p.endPoint()
	if offset == end.off {
		return nil, nil
	}
	if start := p.Start(); offset < start || offset > end.off {
		return nil, &OutOfRangeError{Topic: p.topic, Partition: p.id, Offset: offset, Start: start, End: end.off}
	}
	seg, pos, size, limit, err := p.locate(offset, end)
	if err != nil {
		return nil, err
	}
	defer p.cache.release(seg)
	n := limit - pos
	if int64(maxBytes) < n {
		n = max(int64(maxBytes), int64(size))
	}
	buf := make([]byte, n)
	if err := readFullAt(seg.f, buf, pos); err != nil {
		return nil, fmt.Errorf("logstore: read %s at %d: %w", seg.path, pos, err)
	}
	// Keep whole batches only.
	q := 0
	for len(buf)-q >= batch.PrefixSize {
		n, err := batch.CheckPrefix(buf[q:])
		if err != nil {
			return nil, &CorruptionError{Path: seg.path, Offset: pos + int64(q), Err: err}
		}
		if n > len(buf)-q {
			break
		}
		q += n
	}
	if q == 0 {
		return nil, &CorruptionError{Path: seg.path, Offset: pos, Err: errors.New("BUG: no whole batch read")}
	}
	return buf[:q], nil
}

// locate acquires the segment holding offset, which must be in [Start,
// end.off), and finds the batch holding it: its position and size, and
// limit, where the segment's durable bytes end. On success the caller
// releases seg. Caller holds rw.
func (p *Partition) locate(offset int64, end endPoint) (seg *segment, pos int64, size int, limit int64, err error) {
	seg = p.segmentFor(offset)
	if err := p.cache.acquire(seg); err != nil {
		return nil, 0, 0, 0, err
	}
	limit = seg.size.Load() // a segment before end.seg is sealed: all of it is durable
	if seg == end.seg {
		limit = end.pos
	}
	if pos, size, err = seg.find(offset, limit); err != nil {
		p.cache.release(seg)
		return nil, 0, 0, 0, err
	}
	return seg, pos, size, limit, nil
}

// segmentFor returns the segment holding offset, which must be in
// [Start, End). Caller holds rw.
func (p *Partition) segmentFor(offset int64) *segment {
	lo, hi := 0, len(p.segs) // first segment with base > offset
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.segs[m].base <= offset {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		panic(fmt.Sprintf("BUG: logstore: offset %d before the first segment %d", offset, p.segs[0].base))
	}
	return p.segs[lo-1]
}

// Wait blocks until End() > offset or ctx is done (long-poll support for
// fetch). It returns ctx.Err() when ctx ends first and ErrClosed when the
// store is closed.
func (p *Partition) Wait(ctx context.Context, offset int64) error {
	for {
		p.endMu.Lock()
		if p.end.off > offset {
			p.endMu.Unlock()
			return nil
		}
		if p.endClosed {
			p.endMu.Unlock()
			return ErrClosed
		}
		// Taking the channel under endMu, where advanceEnd closes it, is
		// what makes a wakeup impossible to miss.
		ch := p.endCh
		p.endWaited = true
		p.endMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Scan calls fn with the header of every stored batch below End, in order,
// and stops at the first error fn returns: it reads every segment, so it is
// for tools (the aggregator rebuilds its dedup state from Sources, which
// reads nothing). fn runs without any lock held, so it may call the
// partition; batches appended during the scan are not included.
func (p *Partition) Scan(fn func(h *batch.Header) error) error {
	// End first: every segment up to end.seg is then in the list.
	end := p.endPoint()
	p.rw.RLock()
	if p.rclosed {
		p.rw.RUnlock()
		return ErrClosed
	}
	segs := p.segs
	p.rw.RUnlock()
	var buf []byte
	for _, seg := range segs {
		if seg.base >= end.off {
			break
		}
		p.rw.RLock()
		err := ErrClosed
		if !p.rclosed {
			err = p.cache.acquire(seg)
		}
		p.rw.RUnlock()
		if errors.Is(err, errSegmentGone) {
			continue // deleted by retention meanwhile
		}
		if err != nil {
			return err
		}
		err = p.scanSegment(seg, end, &buf, fn)
		p.cache.release(seg)
		if err != nil {
			return err
		}
	}
	return nil
}

// scanSegment is Scan over one segment, which the caller acquired.
func (p *Partition) scanSegment(seg *segment, end endPoint, buf *[]byte, fn func(h *batch.Header) error) error {
	limit := seg.size.Load()
	if seg == end.seg {
		limit = end.pos
	}
	r := bufio.NewReaderSize(io.NewSectionReader(lockedReader{p, seg.f}, fileHeaderSize, limit-fileHeaderSize), 256<<10)
	for pos := int64(fileHeaderSize); pos < limit; {
		prefix, err := r.Peek(batch.PrefixSize)
		if err != nil {
			return p.scanErr(seg, pos, err)
		}
		n, err := batch.CheckPrefix(prefix)
		if err != nil {
			return &CorruptionError{Path: seg.path, Offset: pos, Err: err}
		}
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, (*buf)[:n]); err != nil {
			return p.scanErr(seg, pos, err)
		}
		h, err := batch.ParseUnchecked((*buf)[:n])
		if err != nil {
			return &CorruptionError{Path: seg.path, Offset: pos, Err: err}
		}
		if err := fn(&h); err != nil {
			return err
		}
		pos += int64(n)
	}
	return nil
}

func (p *Partition) scanErr(seg *segment, pos int64, err error) error {
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &CorruptionError{Path: seg.path, Offset: pos, Err: io.ErrUnexpectedEOF}
	}
	return fmt.Errorf("logstore: scan %s at %d: %w", seg.path, pos, err)
}

// lockedReader reads a segment file under the partition's rw lock, so that
// a long Scan never holds the lock while fn runs, and stops with ErrClosed
// once Close has begun. (The file itself stays open while Scan holds the
// segment acquired.)
type lockedReader struct {
	p *Partition
	f file
}

func (r lockedReader) ReadAt(b []byte, off int64) (int, error) {
	r.p.rw.RLock()
	defer r.p.rw.RUnlock()
	if r.p.rclosed {
		return 0, ErrClosed
	}
	return r.f.ReadAt(b, off)
}
