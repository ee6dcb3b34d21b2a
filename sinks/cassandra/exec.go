package cassandra

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// retryLogEvery is how often retries of one kind are logged, sink-wide:
// a dead cluster must not flood the log.
const retryLogEvery = 10 * time.Second

// loop is one of the sink's Concurrency goroutines: it runs jobs until the
// sink is closed, jobs whose retry is due before new ones (older records
// first). A job waiting out a backoff holds no goroutine (it is parked in
// s.retries), so a partition key that keeps failing cannot take them all
// and stall every other partition; each goroutine still makes at most one
// request at a time, so Concurrency bounds the requests in flight.
func (s *Sink) loop() {
	for {
		j := s.retries.pop()
		if j == nil {
			select {
			case j = <-s.work:
			case <-s.retries.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		s.run(j)
	}
}

// part is what is left of a job to write: its rows, or a run of them once
// a rejected batch was split. Only the goroutine running the job touches
// it.
type part struct {
	rows    []Row
	size    int     // estimated bytes (rowSize)
	retries int     // retries of these rows so far
	bo      backoff // their backoff
	// cause, when set, sends the rows to the dead-letter file, as kind:
	// they are refused, too large or out of retries.
	cause error
	kind  kind
}

// next says what run does after a try of a part.
type next int

const (
	partDone      next = iota // written or dead-lettered: on to the next part
	partSplit                 // rejected: try its halves
	partAgain                 // now bound for the dead-letter file: try that at once
	partRetry                 // failed: try again after a backoff
	partCancelled             // the writer's context ended
)

// run works on j until it is finished (every row written or dead-lettered,
// or its writer cancelled) or parked for a retry, which a goroutine of the
// sink picks up again when it is due.
func (s *Sink) run(j *job) {
	ctx := j.w.ctx
	if j.todo == nil {
		j.one[0] = part{rows: j.rows, size: j.size}
		if j.tooLarge {
			r := &j.rows[0]
			n := len(r.Line)
			if r.Raw != nil {
				n = len(r.Raw)
			}
			j.one[0].cause = fmt.Errorf("cassandra: record of %d bytes (%d as a row) is above max_record_bytes (%d)", n, j.size, s.opts.MaxRecordBytes)
			j.one[0].kind = kindTooLarge
			s.st.errors[kindTooLarge].Add(1)
		}
		j.todo = j.one[:]
	}
	for len(j.todo) > 0 {
		if ctx.Err() != nil {
			s.finish(j, false)
			return
		}
		p := &j.todo[0]
		switch n, wait := s.try(ctx, j.w, p); n {
		case partDone:
			j.todo = j.todo[1:]
		case partSplit:
			// One record spoils the batch: find it, write the rest.
			h := len(p.rows) / 2
			a := part{rows: p.rows[:h], size: p.size / 2}
			b := part{rows: p.rows[h:], size: p.size - p.size/2}
			j.todo = append([]part{a, b}, j.todo[1:]...)
		case partAgain:
		case partRetry:
			if !s.retries.after(j, wait) {
				s.finish(j, false) // the sink is closing
			}
			return
		case partCancelled:
			s.finish(j, false)
			return
		}
	}
	s.finish(j, true)
}

// finish hands j back to its writer: ok when every row is written or
// dead-lettered.
func (s *Sink) finish(j *job, ok bool) {
	w := j.w
	j.release()
	w.finished(j, ok)
}

// try makes one attempt at p, by kind (doc.go): a write, or a dead-letter
// append when p has a cause. Transient and config errors are retried
// after a backoff, a rejected batch is split until the record Cassandra
// refuses is alone, and that one goes to the dead-letter file. Each failed
// try is counted once, under the kind that decided what happens next.
func (s *Sink) try(ctx context.Context, w *writer, p *part) (next, time.Duration) {
	if p.cause != nil {
		return s.deadLetter(w, p)
	}
	s.st.writes.Add(1)
	err := w.sess.WriteBatch(ctx, p.rows)
	if err == nil {
		s.st.batches.Add(1)
		s.st.rows.Add(uint64(len(p.rows)))
		s.st.bytes.Add(uint64(p.size))
		return partDone, 0
	}
	if ctx.Err() != nil {
		return partCancelled, 0 // not a failure of the write
	}
	k := classify(err)
	if k == kindRejected {
		if len(p.rows) > 1 {
			s.st.errors[k].Add(1)
			return partSplit, 0
		}
		// Refused alone: the record's fault, unless the table is
		// broken (a dropped table is "invalid" too). A read of the
		// same partition tells them apart.
		perr := w.sess.Probe(ctx, p.rows[0].Key)
		if ctx.Err() != nil {
			return partCancelled, 0
		}
		if perr == nil {
			s.st.errors[k].Add(1)
			*p = part{rows: p.rows, size: p.size, cause: err, kind: kindRejected}
			return partAgain, 0
		}
		k = kindConfig
		err = fmt.Errorf("%w; the table cannot be read either: %w", err, perr)
	}
	s.st.errors[k].Add(1)
	if s.opts.MaxRetries > 0 && p.retries >= s.opts.MaxRetries {
		// Counted apart: a give-up, not another failed try.
		s.st.errors[kindExhausted].Add(1)
		err = fmt.Errorf("cassandra: gave up after %d retries: %w", p.retries, err)
		*p = part{rows: p.rows, size: p.size, cause: err, kind: kindExhausted}
		return partAgain, 0
	}
	p.retries++
	d := p.bo.next(s.opts.RetryMin, s.opts.RetryMax)
	s.st.retries.Add(1)
	s.logRetry(ctx, w, k, err, p.rows, p.retries, d)
	return partRetry, d
}

// deadLetter appends p's rows to the dead-letter file. While the file
// cannot be written it is retried (with backoff, until the writer is
// cancelled): a record is never dropped, even when the disk is full.
func (s *Sink) deadLetter(w *writer, p *part) (next, time.Duration) {
	path, err := s.dl.write(p.rows, p.kind, p.cause)
	if err == nil {
		s.st.deadLetters.Add(uint64(len(p.rows)))
		w.log.Error("records written to the dead-letter file: Cassandra will not take them",
			"offset", p.rows[0].Offset, "last_offset", p.rows[len(p.rows)-1].Offset, "records", len(p.rows),
			"kind", p.kind.String(), "file", path, "err", p.cause)
		return partDone, 0
	}
	s.st.errors[kindDeadLetter].Add(1)
	s.st.retries.Add(1)
	w.log.Error("cannot write the dead-letter file; retrying (the partition waits)",
		"offset", p.rows[0].Offset, "records", len(p.rows), "err", err)
	return partRetry, p.bo.next(s.opts.RetryMin, s.opts.RetryMax)
}

// logRetry logs a retry: the first of each kind, then one per
// retryLogEvery (the metric counts them all). Config errors are the
// operator's to fix: ERROR; the rest WARN.
func (s *Sink) logRetry(ctx context.Context, w *writer, k kind, err error, rows []Row, attempt int, wait time.Duration) {
	now := time.Now()
	s.logMu.Lock()
	quiet := !s.lastLog[k].IsZero() && now.Sub(s.lastLog[k]) < retryLogEvery
	if !quiet {
		s.lastLog[k] = now
	}
	s.logMu.Unlock()
	if quiet {
		return
	}
	lvl := slog.LevelWarn
	if k == kindConfig {
		lvl = slog.LevelError
	}
	w.log.Log(ctx, lvl, "cassandra write failed, will retry", "kind", k.String(), "offset", rows[0].Offset,
		"records", len(rows), "attempt", attempt, "wait", wait, "err", err)
}

// backoff is an exponential backoff from lo to hi with "equal jitter": a
// wait is between half of the current step and the step, so that the
// writers of a cluster that comes back do not all knock at once. The zero
// value starts at lo.
type backoff struct{ d time.Duration }

func (b *backoff) next(lo, hi time.Duration) time.Duration {
	b.d = min(max(b.d*2, lo), hi)
	half := b.d / 2
	return half + rand.N(b.d-half+1)
}
