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
// sink is closed.
func (s *Sink) loop() {
	for {
		select {
		case j := <-s.work:
			ok := s.run(j.w.ctx, j)
			j.release()
			j.w.finished(j, ok)
		case <-s.ctx.Done():
			return
		}
	}
}

// run writes a job, or dead-letters it. It returns true when every row is
// written or dead-lettered, false when ctx ended first.
func (s *Sink) run(ctx context.Context, j *job) bool {
	if j.tooLarge {
		r := &j.rows[0]
		n := len(r.Line)
		if r.Raw != nil {
			n = len(r.Raw)
		}
		err := fmt.Errorf("cassandra: record of %d bytes (%d as a row) is above max_record_bytes (%d)", n, j.size, s.opts.MaxRecordBytes)
		s.st.errors[kindTooLarge].Add(1)
		return s.deadLetter(ctx, j.w, j.rows, kindTooLarge, err)
	}
	return s.write(ctx, j.w, j.rows, j.size)
}

// write writes rows (one partition key) as one batch, retrying failures by
// kind (doc.go): transient and config errors after a backoff, rejections
// by splitting the batch until the record Cassandra refuses is alone, and
// that one to the dead-letter file.
func (s *Sink) write(ctx context.Context, w *writer, rows []Row, size int) bool {
	bo := backoff{min: s.opts.RetryMin, max: s.opts.RetryMax}
	for retries := 0; ; retries++ {
		if ctx.Err() != nil {
			return false
		}
		s.st.writes.Add(1)
		err := w.sess.WriteBatch(ctx, rows)
		if err == nil {
			s.st.batches.Add(1)
			s.st.rows.Add(uint64(len(rows)))
			s.st.bytes.Add(uint64(size))
			return true
		}
		if ctx.Err() != nil {
			return false // cancelled: not a failure of the write
		}
		k := classify(err)
		s.st.errors[k].Add(1)
		if k == kindRejected {
			if len(rows) > 1 {
				// One record spoils the batch: find it, write the rest.
				h := len(rows) / 2
				return s.write(ctx, w, rows[:h], size/2) && s.write(ctx, w, rows[h:], size-size/2)
			}
			// Refused alone: the record's fault, unless the table is
			// broken (a dropped table is "invalid" too). A read of the
			// same partition tells them apart.
			perr := w.sess.Probe(ctx, rows[0].Key)
			if ctx.Err() != nil {
				return false
			}
			if perr == nil {
				return s.deadLetter(ctx, w, rows, kindRejected, err)
			}
			k = kindConfig
			s.st.errors[k].Add(1)
			err = fmt.Errorf("%w; the table cannot be read either: %w", err, perr)
		}
		if s.opts.MaxRetries > 0 && retries >= s.opts.MaxRetries {
			err = fmt.Errorf("cassandra: gave up after %d retries: %w", retries, err)
			s.st.errors[kindExhausted].Add(1)
			return s.deadLetter(ctx, w, rows, kindExhausted, err)
		}
		d := bo.next()
		s.st.retries.Add(1)
		s.logRetry(ctx, w, k, err, rows, retries+1, d)
		if !sleep(ctx, d) {
			return false
		}
	}
}

// deadLetter writes rows to the dead-letter file, retrying (with backoff,
// until ctx ends) while the file cannot be written: a record is never
// dropped, even when the disk is full.
func (s *Sink) deadLetter(ctx context.Context, w *writer, rows []Row, k kind, cause error) bool {
	bo := backoff{min: s.opts.RetryMin, max: s.opts.RetryMax}
	for {
		path, err := s.dl.write(rows, k, cause)
		if err == nil {
			s.st.deadLetters.Add(uint64(len(rows)))
			w.log.Error("records written to the dead-letter file: Cassandra will not take them",
				"offset", rows[0].Offset, "last_offset", rows[len(rows)-1].Offset, "records", len(rows),
				"kind", k.String(), "file", path, "err", cause)
			return true
		}
		s.st.errors[kindDeadLetter].Add(1)
		s.st.retries.Add(1)
		w.log.Error("cannot write the dead-letter file; retrying (the partition waits)",
			"offset", rows[0].Offset, "records", len(rows), "err", err)
		if !sleep(ctx, bo.next()) {
			return false
		}
	}
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

// backoff is an exponential backoff from min to max with "equal jitter":
// a wait is between half of the current step and the step, so that the
// writers of a cluster that comes back do not all knock at once.
type backoff struct {
	min, max, d time.Duration
}

func (b *backoff) next() time.Duration {
	b.d = min(max(b.d*2, b.min), b.max)
	half := b.d / 2
	return half + rand.N(b.d-half+1)
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
