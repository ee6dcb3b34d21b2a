package cassandra

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"logship/sinks"
)

// A job is one batch: rows of one partition key, written (and retried) by
// the sink's goroutines, one at a time. The writer fills it while it is
// open; once sent, only the sink's goroutine running it (or the retry
// queue, while it waits) touches its rows and todo, and the writer reads
// done alone.
type job struct {
	w        *writer
	key      Key
	rows     []Row
	spans    []span // where each row's line and raw bytes are in buf
	buf      []byte // the rows' bytes, copied: a Record's Data is not ours
	size     int    // estimated bytes (rowSize)
	tooLarge bool   // one record above MaxRecordBytes: dead-lettered, not sent
	done     atomic.Bool

	todo []part  // what is left to write, nil until first run (exec.go)
	one  [1]part // todo's first array: no allocation per batch
}

type span struct{ line, raw, end int }

// seal points the rows at their bytes, now that buf no longer grows.
func (j *job) seal() {
	for i, sp := range j.spans {
		r := &j.rows[i]
		r.Line = j.buf[sp.line:sp.raw:sp.raw]
		if sp.end > sp.raw {
			r.Raw = j.buf[sp.raw:sp.end:sp.end]
		}
	}
}

// jobBufs are the slices of a finished job, kept for the next one: the
// sink's pool saves an allocation of each per batch.
type jobBufs struct {
	rows  []Row
	spans []span
	buf   []byte
}

// newJob returns an open job for key, with buffers from the pool.
func (w *writer) newJob(key Key) *job {
	j := &job{w: w, key: key}
	if b, ok := w.s.bufs.Get().(*jobBufs); ok {
		j.rows, j.spans, j.buf = b.rows, b.spans, b.buf
	}
	return j
}

// release gives j's buffers back to the pool. The sink's goroutine calls it
// once it is done with the rows: the writer never reads them after send.
func (j *job) release() {
	if cap(j.buf) > 2*j.w.s.opts.BatchMaxBytes {
		j.rows, j.spans, j.buf = nil, nil, nil // a large record's: not kept
		j.todo, j.one = nil, [1]part{}
		return
	}
	j.todo, j.one = nil, [1]part{}
	clear(j.rows) // no references to strings of old records
	j.w.s.bufs.Put(&jobBufs{rows: j.rows[:0], spans: j.spans[:0], buf: j.buf[:0]})
	j.rows, j.spans, j.buf = nil, nil, nil
}

// seg is a run of consecutive records (in offset order) that went into the
// same job: the offsets [from, to) are written when the job is done. j is
// nil for a run known to be written: compact merges such runs.
type seg struct {
	from, to int64
	j        *job
}

// minCompact is the length of segs at which track first compacts it.
const minCompact = 1024

// writer is a sinks.PartitionWriter: it groups a partition's records by
// partition key into jobs, hands them to the sink's goroutines, and
// reports the offset below which every record is written. Write, Tick and
// Close are called by the runtime's one goroutine for the partition; the
// sink's goroutines only set a job's done and signal progress.
type writer struct {
	s    *Sink
	sess Session
	p    sinks.Partition
	log  *slog.Logger

	// ctx is the context of the writer's jobs: Close cancels it when it
	// stops waiting, so that their retries end.
	ctx    context.Context
	cancel context.CancelFunc

	groups    map[Key]*job // open jobs, still filling
	openBytes int          // their size
	// segs are the records not yet reported, in offset order: runs of
	// written records merged (compact), each run of an unfinished job
	// apart. Its length is thus bounded by the rows of the open and
	// unfinished jobs, however long the first of them keeps failing.
	segs      []seg
	compactAt int   // len(segs) at which track compacts it
	last      int64 // the offset after the last record written, -1 none
	reported  int64 // the last offset Tick or Close returned, -1 none

	// inflight counts the jobs handed to the sink and not finished:
	// being written or waiting for a retry. send keeps it at most
	// Concurrency, which bounds what a writer holds sent (Concurrency ×
	// BatchMaxBytes) now that a job waiting for a retry holds no
	// goroutine of the sink.
	inflight atomic.Int64
	progress chan struct{} // signalled (never blocking) when a job finishes
}

var _ sinks.PartitionWriter = (*writer)(nil)

func newWriter(s *Sink, sess Session, p sinks.Partition) *writer {
	ctx, cancel := context.WithCancel(s.ctx)
	return &writer{
		s: s, sess: sess, p: p, ctx: ctx, cancel: cancel,
		log:    s.log.With("aggregator", p.Aggregator, "topic", p.Topic, "partition", p.Partition),
		groups: map[Key]*job{}, last: -1, reported: -1, progress: make(chan struct{}, 1), compactAt: minCompact,
	}
}

// rowSize estimates what r costs in a batch: its text and blob columns
// and rowOverhead.
func rowSize(r *sinks.Record, valid bool) int {
	n := len(r.Data)
	if !valid {
		n += validLen(r.Data) // line with U+FFFD, and raw
	}
	return n + len(r.Source) + len(r.Topic) + len(r.Host) + len(r.Aggregator) + rowOverhead
}

// validLen is len(appendValidUTF8(nil, b)).
func validLen(b []byte) int {
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			n += utf8.RuneLen(utf8.RuneError)
		} else {
			n += size
		}
		b = b[size:]
	}
	return n
}

// floorDiv is a/b rounded down (times before 1970 too).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// keyOf returns the partition key of a record with time t (unix ns).
func (w *writer) keyOf(r *sinks.Record) Key {
	b := w.s.opts.Bucket.Milliseconds()
	return Key{Topic: r.Topic, Host: r.Host, Bucket: floorDiv(floorDiv(r.Time, 1e6), b) * b}
}

// Write adds r to the open job of its partition key. It blocks only to hand
// a full job to the sink: while the writer has Concurrency jobs unfinished
// (being written or waiting for a retry), or all of the sink's Concurrency
// goroutines are busy.
func (w *writer) Write(ctx context.Context, r *sinks.Record) error {
	if w.reported < 0 {
		w.reported = r.Offset // where the runtime started: nothing new to report
	}
	valid := utf8.Valid(r.Data)
	size := rowSize(r, valid)
	key := w.keyOf(r)
	if size > w.s.opts.MaxRecordBytes {
		j := w.newJob(key)
		j.size, j.tooLarge = size, true
		j.add(r, valid, size)
		w.track(r.Offset, j)
		w.last = r.Offset + 1
		return w.send(ctx, j)
	}
	j := w.groups[key]
	if j != nil && (j.size+size > w.s.opts.BatchMaxBytes || len(j.rows) == maxBatchRows) {
		delete(w.groups, key)
		w.openBytes -= j.size
		if err := w.send(ctx, j); err != nil {
			return err
		}
		j = nil
	}
	if j == nil {
		j = w.newJob(key)
		w.groups[key] = j
	}
	j.add(r, valid, size)
	w.openBytes += size
	w.track(r.Offset, j)
	w.last = r.Offset + 1
	if w.openBytes > openFactor*w.s.opts.BatchMaxBytes {
		return w.flush(ctx)
	}
	return nil
}

// add copies r into j as a row.
func (j *job) add(r *sinks.Record, valid bool, size int) {
	ts := floorDiv(r.Time, 1e6)
	j.rows = append(j.rows, Row{
		Key: j.key, TS: ts, Aggregator: r.Aggregator, Partition: r.Partition, Offset: r.Offset, Source: r.Source,
	})
	if !utf8.ValidString(r.Source) {
		j.rows[len(j.rows)-1].Source = strings.ToValidUTF8(r.Source, "\uFFFD")
	}
	sp := span{line: len(j.buf)}
	if valid {
		j.buf = append(j.buf, r.Data...)
		sp.raw = len(j.buf)
	} else {
		j.buf = appendValidUTF8(j.buf, r.Data)
		sp.raw = len(j.buf)
		j.buf = append(j.buf, r.Data...)
	}
	sp.end = len(j.buf)
	j.spans = append(j.spans, sp)
	if !j.tooLarge {
		j.size += size
	}
}

// appendValidUTF8 appends b with each invalid byte sequence replaced by
// U+FFFD.
func appendValidUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// track records that offset went into j.
func (w *writer) track(offset int64, j *job) {
	if n := len(w.segs); n > 0 && w.segs[n-1].j == j {
		w.segs[n-1].to = offset + 1
		return
	}
	if len(w.segs) >= w.compactAt {
		w.compact()
	}
	w.segs = append(w.segs, seg{from: offset, to: offset + 1, j: j})
}

// compact drops the written runs at the head of segs and merges the
// adjacent written runs after it, so that a job that keeps failing does
// not make segs grow with every record written behind it. The next
// compaction is due when segs doubled: amortised O(1) a record.
func (w *writer) compact() {
	out := w.segs[:0]
	for _, s := range w.segs {
		if s.j != nil && s.j.done.Load() {
			s.j = nil // let the job go
		}
		switch n := len(out); {
		case s.j != nil:
			out = append(out, s)
		case n == 0:
			// Written, and nothing before it is not: reported by
			// advance from the next run (or w.last).
		case out[n-1].j == nil:
			out[n-1].to = s.to
		default:
			out = append(out, s)
		}
	}
	clear(w.segs[len(out):])
	w.segs = out
	w.compactAt = max(2*len(out), minCompact)
}

// send hands j to one of the sink's goroutines, waiting while the writer
// has Concurrency jobs unfinished or all the goroutines are busy. A job
// that could not be sent is never done: the offsets it holds are not
// reported, and the runtime delivers them again.
func (w *writer) send(ctx context.Context, j *job) error {
	j.seal()
	for w.inflight.Load() >= int64(w.s.opts.Concurrency) {
		select {
		case <-w.progress:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.ctx.Done():
			return errClosed
		}
	}
	w.inflight.Add(1)
	w.s.st.inflight.Add(1)
	select {
	case w.s.work <- j:
		return nil
	case <-ctx.Done():
		w.unsent()
		return ctx.Err()
	case <-w.ctx.Done():
		w.unsent()
		return errClosed
	}
}

func (w *writer) unsent() {
	w.inflight.Add(-1)
	w.s.st.inflight.Add(-1)
}

// finished is called by the sink's goroutine that ran j: ok when every row
// of j is written or dead-lettered.
func (w *writer) finished(j *job, ok bool) {
	if ok {
		j.done.Store(true)
	}
	w.inflight.Add(-1)
	w.s.st.inflight.Add(-1)
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

// flush sends every open job.
func (w *writer) flush(ctx context.Context) error {
	for k, j := range w.groups {
		delete(w.groups, k)
		w.openBytes -= j.size
		if err := w.send(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// Tick sends the open jobs (a batch waits at most until the next Tick,
// which follows every fetch) and returns the next offset below which every
// record is written, or -1 when that did not move.
func (w *writer) Tick(ctx context.Context, _ time.Time) (int64, error) {
	if err := w.flush(ctx); err != nil {
		return -1, err
	}
	return w.advance(), nil
}

// advance drops the done runs at the head of segs and returns the new
// written prefix, or -1 when it did not move. A job done out of order
// waits behind the first one not done: the prefix never passes a hole.
func (w *writer) advance() int64 {
	w.compact()
	next := w.last
	if len(w.segs) > 0 {
		next = w.segs[0].from
	}
	if next > w.reported {
		w.reported = next
		return next
	}
	return -1
}

// Close sends the open jobs and waits, until ctx is done, for every job to
// finish. When ctx ends first it cancels the jobs still retrying and
// returns an error with the prefix written: their records are delivered
// again from there.
func (w *writer) Close(ctx context.Context) (int64, error) {
	defer w.cancel()
	err := w.flush(ctx)
	for err == nil && w.inflight.Load() > 0 {
		select {
		case <-w.progress:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		w.cancel()
		w.s.retries.expire(w) // its parked jobs end now, not at their timers
		n := w.inflight.Load() + int64(len(w.groups))
		err = fmt.Errorf("cassandra: %d batches of %s/%s/%d not written at close, delivered again from the last committed offset: %w",
			n, w.p.Aggregator, w.p.Topic, w.p.Partition, err)
	}
	return w.advance(), err
}
