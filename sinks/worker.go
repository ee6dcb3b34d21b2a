package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// tickEvery is how often a waiting worker ticks its writer.
const tickEvery = time.Second

// sinkError marks an error of the sink (Open, Write, Tick): the writer is
// closed and opened again, and consumption resumes from what the sink says.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// worker consumes one partition of one aggregator into one writer. All of
// its fields are owned by its one goroutine (run).
type worker struct {
	r    *runner
	addr string
	k    partKey
	log  *slog.Logger

	c   *Client
	dec *Decoder
	w   PartitionWriter

	// next is the next offset to fetch, -1 until resolved for the current
	// writer. durable is the next offset the sink holds durably as far as
	// the runtime knows (-1 unknown): where a new writer resumes when the
	// sink itself knows nothing. committed is what the aggregator holds
	// (-1 unknown), pending what should be committed next (-1 nothing).
	next, durable, committed, pending int64
	refused                           bool // the last commit was refused (logged once)
	// epoch is the reset epoch the writer consumes under: the one of the
	// aggregator's commit when the writer was opened. checked is when the
	// aggregator's epoch was last looked at, to follow an operator's reset.
	epoch   uint64
	checked time.Time
}

func newWorker(r *runner, addr string, k partKey) *worker {
	return &worker{
		r: r, addr: addr, k: k,
		log:  r.log.With("aggregator", k.agg, "topic", k.topic, "partition", k.part),
		next: -1, durable: -1, committed: -1, pending: -1,
	}
}

// run consumes until ctx is done, then closes the writer and commits.
func (w *worker) run(ctx context.Context) {
	defer w.shutdown(ctx)
	var bo backoff
	failing := false
	for ctx.Err() == nil {
		err := w.step(ctx)
		if err == nil {
			if failing {
				w.log.Info("partition recovered")
				failing = false
			}
			bo.reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		lvl := slog.LevelWarn
		if failing && w.c == nil && !isSinkError(err) {
			lvl = slog.LevelDebug // the aggregator is still down: said already
		}
		w.log.Log(ctx, lvl, "partition failing, will retry", "offset", w.next, "err", err)
		failing = true
		w.dropBroken(ctx, err)
		w.pause(ctx, bo.next())
	}
}

func isSinkError(err error) bool {
	var se *sinkError
	return errors.As(err, &se)
}

// dropBroken drops what err broke: the connection, or the writer.
func (w *worker) dropBroken(ctx context.Context, err error) {
	if isSinkError(err) {
		w.r.opts.Stats.sinkErrors.Add(1)
		w.closeWriter(ctx)
	}
	if w.c != nil && w.c.broken() {
		w.c.Close()
		w.c = nil
	}
}

// step does one round: connect and open as needed, fetch, write, tick.
func (w *worker) step(ctx context.Context) error {
	if err := w.connect(ctx); err != nil {
		return err
	}
	if w.w == nil {
		if err := w.open(ctx); err != nil {
			return err
		}
	}
	if err := w.followReset(ctx, false); err != nil {
		return err
	}
	if w.next < 0 {
		if err := w.resolve(ctx); err != nil {
			return err
		}
	}
	if err := w.commit(ctx); err != nil {
		return err
	}
	res, err := w.c.Fetch(ctx, w.k.topic, w.k.part, w.next, w.r.opts.FetchBytes, w.maxWait())
	if oor := (*OutOfRangeError)(nil); errors.As(err, &oor) {
		return w.jump(ctx, oor)
	}
	if err != nil {
		return err
	}
	from := w.next
	var records, bytes int64
	err = w.dec.Decode(w.k.agg, w.k.part, res.Batches, from, func(rec *Record) error {
		if rec.Offset != w.next {
			w.log.Warn("gap in the log: records missing", "offset", w.next, "next_present", rec.Offset)
			w.r.opts.Stats.gaps.Add(rec.Offset - w.next)
		}
		if err := w.w.Write(ctx, rec); err != nil {
			return &sinkError{fmt.Errorf("write offset %d: %w", rec.Offset, err)}
		}
		w.next = rec.Offset + 1
		records++
		bytes += int64(len(rec.Data))
		return nil
	})
	stats := w.r.opts.Stats
	stats.fetches.Add(1)
	stats.records.Add(records)
	stats.bytes.Add(bytes)
	stats.update(w.k, func(p *PartitionStats) { p.Next, p.End, p.Epoch = w.next, res.End, w.epoch })
	if err != nil {
		return err
	}
	if len(res.Batches) > 0 && w.next == from {
		return fmt.Errorf("sinks: fetch at offset %d returned %d bytes but no record at or after it", from, len(res.Batches))
	}
	return w.tick(ctx)
}

// maxWait is the fetch's long poll: MaxWait, or less when the writer has
// work due sooner (TickDeadliner), rounded up to the wire's milliseconds.
func (w *worker) maxWait() time.Duration {
	wait := w.r.opts.MaxWait
	if d, ok := w.w.(TickDeadliner); ok {
		if t, ok := d.NextTick(); ok {
			until := time.Until(t)
			until = (until + time.Millisecond - 1).Truncate(time.Millisecond)
			wait = min(wait, max(until, 0))
		}
	}
	return wait
}

// connect dials the aggregator when there is no usable connection.
func (w *worker) connect(ctx context.Context) error {
	if w.dec == nil {
		dec, err := NewDecoder()
		if err != nil {
			return err
		}
		w.dec = dec
	}
	if w.c != nil {
		return nil
	}
	c, err := w.r.opts.Security.Dial(ctx, w.addr, w.r.opts.Name)
	if err != nil {
		return err
	}
	if c.Aggregator() != w.k.agg {
		c.Close()
		return fmt.Errorf("sinks: %s is now aggregator %q, not %q: not consuming it as this partition", w.addr, c.Aggregator(), w.k.agg)
	}
	w.c = c
	return nil
}

// open reads the aggregator's commit and opens the writer; the offset the
// sink reports becomes next.
func (w *worker) open(ctx context.Context) error {
	c, err := w.readCommitted(ctx)
	if err != nil {
		return err
	}
	if c.Epoch != w.epoch {
		// An operator's reset: what this worker knew of the sink's
		// position belongs to the old epoch.
		w.durable, w.pending = -1, -1
	}
	w.epoch = c.Epoch
	p := Partition{Aggregator: w.k.agg, Topic: w.k.topic, Partition: w.k.part, Committed: c.Offset, Epoch: c.Epoch}
	pw, known, err := w.r.sink.Open(ctx, p)
	if err != nil {
		return &sinkError{fmt.Errorf("open: %w", err)}
	}
	w.w = pw
	w.next = -1
	if known >= 0 {
		w.next = known
		w.log.Debug("resuming where the sink stands", "offset", known, "epoch", c.Epoch)
	}
	return nil
}

// readCommitted reads the sink's commit of the partition from the
// aggregator: offset -1 when there is none. It sets committed.
func (w *worker) readCommitted(ctx context.Context) (Committed, error) {
	all, err := w.c.Committed(ctx, w.r.opts.Name, w.k.topic)
	if err != nil {
		return Committed{}, err
	}
	w.checked = time.Now()
	c, ok := all[w.k.part]
	if !ok {
		c.Offset = -1
	}
	w.committed = c.Offset
	return c, nil
}

// resolve sets next when the sink knows nothing: where the sink was last
// seen durable, else the aggregator's commit, else Options.Start.
func (w *worker) resolve(ctx context.Context) error {
	if w.durable >= 0 {
		w.next = w.durable
		return nil
	}
	if w.committed >= 0 {
		w.next = w.committed
		w.log.Debug("resuming from the committed offset", "offset", w.committed, "epoch", w.epoch)
		return nil
	}
	parts, err := w.c.Metadata(ctx, []string{w.k.topic})
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p.Topic != w.k.topic || int(p.Partition) != w.k.part {
			continue
		}
		w.next = p.Start
		if w.r.opts.Start == StartLatest {
			w.next = p.End
		}
		w.log.Info("nothing known: starting at "+w.r.opts.Start, "offset", w.next)
		return nil
	}
	return fmt.Errorf("%w: %s/%s/%d is not in the aggregator's metadata", ErrUnknownPartition, w.k.agg, w.k.topic, w.k.part)
}

// followReset looks, every MetadataInterval, at the aggregator's epoch of
// the partition; when an operator reset it, the writer is closed (what it
// wrote is kept: it was fetched before the reset) and opened again under
// the new epoch, so the sink re-delivers from the reset offset.
func (w *worker) followReset(ctx context.Context, force bool) error {
	if !force && time.Since(w.checked) < w.r.opts.MetadataInterval {
		return nil
	}
	c, err := w.readCommitted(ctx)
	if err != nil {
		return err
	}
	if c.Epoch == w.epoch {
		return nil
	}
	w.log.Info("offset reset by an operator: re-delivering from it", "offset", c.Offset, "epoch", c.Epoch, "was_at", w.next)
	w.r.opts.Stats.resets.Add(1)
	if err := w.closeWriter(ctx); err != nil {
		return err
	}
	w.durable, w.pending = -1, -1
	return w.open(ctx)
}

// commit sends the pending offset, and the offset consumption starts from
// when the aggregator's commit differs (so lag shows where the sink stands).
func (w *worker) commit(ctx context.Context) error {
	if w.pending < 0 && w.durable < 0 && w.next >= 0 {
		// A writer was just opened and resolved: pin where it starts.
		w.durable = w.next
		if w.next != w.committed {
			w.pending = w.next
		}
	}
	if w.pending < 0 || w.c == nil {
		return nil
	}
	if w.pending == w.committed {
		w.pending = -1
		return nil
	}
	err := w.c.Commit(ctx, w.r.opts.Name, w.k.topic, w.k.part, w.pending, w.epoch)
	if errors.Is(err, ErrOffsetReset) {
		if w.w == nil {
			// Shutting down: the next run follows the reset.
			w.pending = -1
			return nil
		}
		return w.followReset(ctx, true)
	}
	if err != nil {
		w.r.opts.Stats.commitErrors.Add(1)
	}
	if errors.Is(err, ErrCommitRefused) {
		// Not a reason to stop consuming: the sink's output is the truth,
		// and the commit is tried again after the next fetch.
		if !w.refused {
			w.log.Warn("commit refused; consuming on and retrying", "offset", w.pending, "err", err)
			w.refused = true
		}
		return nil
	}
	if err != nil {
		return err
	}
	w.committed, w.pending, w.refused = w.pending, -1, false
	w.r.opts.Stats.commits.Add(1)
	w.r.opts.Stats.update(w.k, func(p *PartitionStats) { p.Committed = w.committed })
	return nil
}

// tick ticks the writer and commits what it published.
func (w *worker) tick(ctx context.Context) error {
	if w.w == nil {
		return nil
	}
	off, err := w.w.Tick(ctx, time.Now())
	if err != nil {
		return &sinkError{fmt.Errorf("tick: %w", err)}
	}
	w.published(off)
	return w.commit(ctx)
}

func (w *worker) published(off int64) {
	if off >= 0 {
		w.durable, w.pending = off, off
	}
}

// jump handles a fetch out of range: it says so (never silently), closes
// the writer so that no output spans the jump, and goes on from the start
// or the end of the partition.
func (w *worker) jump(ctx context.Context, oor *OutOfRangeError) error {
	var to int64
	switch {
	case oor.Offset < oor.Start:
		to = oor.Start
		w.log.Warn("records lost to retention: the aggregator deleted them before this sink read them; going on from the partition's start",
			"offset", oor.Offset, "start", oor.Start, "lost", oor.Start-oor.Offset)
	case oor.Offset > oor.End:
		to = oor.End
		w.log.Warn("offset beyond the partition's end: the aggregator lost or reset its log; going on from its end",
			"offset", oor.Offset, "end", oor.End)
	default:
		return fmt.Errorf("sinks: aggregator says offset %d is out of range [%d, %d]", oor.Offset, oor.Start, oor.End)
	}
	if err := w.closeWriter(ctx); err != nil {
		return err
	}
	if err := w.open(ctx); err != nil {
		return err
	}
	w.next, w.durable, w.pending = to, to, to
	return w.commit(ctx)
}

// closeWriter closes the writer and keeps the offset it published for the
// next commit. A failed close is logged and returned; the writer is dropped
// either way, and next is resolved again for the next writer.
func (w *worker) closeWriter(ctx context.Context) error {
	if w.w == nil {
		return nil
	}
	off, err := w.w.Close(ctx)
	w.w = nil
	w.next = -1
	w.published(off)
	if err != nil {
		err = &sinkError{fmt.Errorf("close writer: %w", err)}
		w.log.Error("closing writer", "err", err)
	}
	return err
}

// pause waits d (or until ctx is done), ticking the writer every second so
// that rolling by age and idle time goes on while the aggregator is down.
func (w *worker) pause(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 || !sleep(ctx, min(left, tickEvery)) {
			return
		}
		if err := w.tick(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("tick while waiting", "err", err)
			w.dropBroken(ctx, err)
		}
	}
}

// shutdown closes the writer and commits, bounded by CloseTimeout, then
// releases the connection and the decoder.
func (w *worker) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.r.opts.CloseTimeout)
	defer cancel()
	if w.w != nil {
		if err := w.closeWriter(ctx); err != nil {
			w.r.closeFailed(fmt.Errorf("%s/%s/%d: %w", w.k.agg, w.k.topic, w.k.part, err))
		}
	}
	if w.pending >= 0 && w.pending != w.committed {
		if w.c != nil && w.c.broken() {
			w.c.Close()
			w.c = nil
		}
		err := w.connect(ctx)
		if err == nil {
			err = w.commit(ctx)
		}
		if err != nil {
			w.log.Warn("final commit failed; the sink's output is still the truth", "offset", w.pending, "err", err)
		}
	}
	if w.c != nil {
		w.c.Close()
	}
	if w.dec != nil {
		w.dec.Close()
	}
}
