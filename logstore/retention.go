package logstore

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"logship/logstore/batch"
)

// Time-driven upkeep: rolling by age and retention. See doc.go, "Segment
// lifecycle".

// maintainLoop is the Store's goroutine for upkeep that no append drives:
// it rolls every active segment whose first batch is SegmentMaxAge old,
// so that an idle partition's data can expire too, and enforces retention
// every RetentionCheckInterval. One goroutine serves every partition. It
// runs until Close.
func (s *Store) maintainLoop() {
	defer close(s.mdone)
	now := s.opts.Now()
	nextRetention := now.Add(s.opts.RetentionCheckInterval)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var backoff time.Duration // after a failed roll, so a broken disk does not spin us
	for {
		wake := nextRetention
		if r := s.nextRoll(now); r.Before(wake) {
			wake = r
		}
		if d := now.Add(backoff); wake.Before(d) {
			wake = d
		}
		t.Reset(wake.Sub(now))
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now = s.opts.Now()
		backoff = 0
		for _, p := range s.Partitions() {
			if err := p.rollIfOld(now); err != nil {
				s.opts.Logger.Error("roll by age failed", "topic", p.topic, "partition", p.id, "err", err)
				backoff = time.Second
			}
		}
		if !now.Before(nextRetention) {
			if err := s.EnforceRetention(now); err != nil && !errors.Is(err, ErrClosed) {
				s.opts.Logger.Error("retention failed", "err", err)
			}
			nextRetention = now.Add(s.opts.RetentionCheckInterval)
		}
	}
}

// nextRoll returns when the next active segment must roll by age, at most
// SegmentMaxAge from now (a segment that gets its first batch later rolls
// later than that).
func (s *Store) nextRoll(now time.Time) time.Time {
	next := now.Add(s.opts.SegmentMaxAge)
	for _, p := range s.Partitions() {
		p.mu.Lock()
		if seg := p.active(); !p.closed && !seg.empty() {
			if due := seg.origin.Add(p.opts.SegmentMaxAge); due.Before(next) {
				next = due
			}
		}
		p.mu.Unlock()
	}
	return next
}

// rollIfOld rolls the active segment if it is SegmentMaxAge old at now.
func (p *Partition) rollIfOld(now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.failure() != nil || !p.tooOld(p.active(), now) {
		return nil
	}
	return p.roll()
}

// EnforceRetention deletes, in every partition, the sealed segments that
// retention no longer keeps at time now: those whose last append time is
// older than RetentionAge, and the oldest while a partition holds more
// than RetentionBytes. The active segment is never deleted. The Store's
// goroutine calls it every RetentionCheckInterval; tests and tools may call
// it at any time.
func (s *Store) EnforceRetention(now time.Time) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var errs []error
	for _, p := range s.Partitions() {
		if err := p.enforceRetention(now); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// expired is a segment that retention deletes, and why.
type expired struct {
	seg    *segment
	reason string
}

// enforceRetention deletes p's expired segments: it takes them off the
// segment list and moves Start (under mu and rw, so no new reader finds
// them), then removes their files. A reader that acquired one before keeps
// reading it to its end: the cache closes the file at its last release,
// and until then the open descriptor keeps the unlinked data.
func (p *Partition) enforceRetention(now time.Time) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.rw.Lock()
	dead := p.expired(now)
	if len(dead) > 0 {
		p.segs = slices.Clone(p.segs[len(dead):])
		p.start.Store(p.segs[0].base)
	}
	// Mark them gone before readers can run again: a Scan working from
	// its own copy of the list then skips them (errSegmentGone) instead
	// of opening a file that is about to be removed.
	for _, d := range dead {
		p.cache.forget(d.seg, false)
	}
	p.rw.Unlock()
	p.mu.Unlock()
	if len(dead) == 0 {
		return nil
	}
	var errs []error
	for _, d := range dead {
		// The indexes go first: a crash in between leaves a segment
		// without indexes, which Open rebuilds (and the next check
		// deletes), never indexes without a segment.
		for _, path := range []string{timeIndexPathOf(d.seg.path), indexPathOf(d.seg.path), d.seg.path} {
			if err := p.fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("logstore: retention: %w", err))
			}
		}
		p.log.Info("deleted segment", "segment", d.seg.path, "reason", d.reason,
			"offset", d.seg.base, "next_offset", d.seg.next.Load(), "bytes", d.seg.size.Load())
	}
	if err := p.fsys.SyncDir(p.dir); err != nil {
		errs = append(errs, fmt.Errorf("logstore: retention: sync %s: %w", p.dir, err))
	}
	return errors.Join(errs...)
}

// expired returns the oldest sealed segments that retention deletes at
// now, oldest first. Caller holds mu and rw.
func (p *Partition) expired(now time.Time) []expired {
	sealed := p.segs[:len(p.segs)-1]
	var total int64
	for _, s := range p.segs {
		total += s.size.Load()
	}
	age, limit := p.opts.retention()
	cutoff := int64(noTime)
	if age > 0 {
		cutoff = now.Add(-age).UnixMilli()
	}
	var out []expired
	for _, s := range sealed {
		switch {
		case s.lastTime.Load() < cutoff:
			// By its last append time, never its records' timestamps: a
			// segment of records from the future still expires (KAFKA-20609).
			out = append(out, expired{s, fmt.Sprintf("age: last append %s before %s",
				time.UnixMilli(s.lastTime.Load()).UTC().Format(time.RFC3339), time.UnixMilli(cutoff).UTC().Format(time.RFC3339))})
		case limit > 0 && total > limit:
			out = append(out, expired{s, fmt.Sprintf("bytes: partition holds %d, retention %d", total, limit)})
		default:
			return out
		}
		total -= s.size.Load()
	}
	return out
}

// PartitionInfo describes a partition, for status and tools.
type PartitionInfo struct {
	Topic     string
	Partition int
	Start     int64 // first offset still in the log
	End       int64 // durable end: the offset the next record gets
	Segments  int
	Bytes     int64 // bytes of every segment file, headers included
	// Append times of the first and last batch written (zero when there is
	// none). Retention deletes by the last append time of each segment.
	FirstAppendTime, LastAppendTime time.Time
}

// Info returns the partition's current state. It reads metadata only: no
// file is opened. Safe for concurrent use.
func (p *Partition) Info() PartitionInfo {
	p.rw.RLock()
	defer p.rw.RUnlock()
	info := PartitionInfo{Topic: p.topic, Partition: p.id, Start: p.Start(), End: p.End(), Segments: len(p.segs)}
	first, last := int64(noTime), int64(noTime)
	for _, s := range p.segs {
		info.Bytes += s.size.Load()
		if first == noTime {
			first = s.firstTime.Load()
		}
		last = max(last, s.lastTime.Load())
	}
	if first != noTime {
		info.FirstAppendTime = time.UnixMilli(first)
	}
	if last != noTime {
		info.LastAppendTime = time.UnixMilli(last)
	}
	return info
}

// ConsumerLag is where a consumer at some offset stands in a partition.
type ConsumerLag struct {
	Records int64 // records from the offset to the durable end
	Bytes   int64 // stored bytes from the batch holding the offset to the end
	// AppendTime is when the batch holding the offset was appended: how
	// far behind in time the consumer is. Zero when it is at the end.
	AppendTime time.Time
}

// Lag returns how far a consumer whose next offset is offset is behind
// the durable end. An offset at or past End has no lag; one before Start
// counts from Start. It reads at most a few batch prefixes. Safe for
// concurrent use.
func (p *Partition) Lag(offset int64) (ConsumerLag, error) {
	p.rw.RLock()
	defer p.rw.RUnlock()
	if p.rclosed {
		return ConsumerLag{}, ErrClosed
	}
	end := p.endPoint()
	if offset >= end.off {
		return ConsumerLag{}, nil
	}
	offset = max(offset, p.Start())
	seg, pos, _, limit, err := p.locate(offset, end)
	if err != nil {
		return ConsumerLag{}, err
	}
	defer p.cache.release(seg)
	var prefix [batch.PrefixSize]byte
	if _, err := seg.batchPrefix(pos, &prefix); err != nil {
		return ConsumerLag{}, err
	}
	lag := ConsumerLag{Records: end.off - offset, Bytes: limit - pos, AppendTime: time.UnixMilli(batch.AppendTime(prefix[:]))}
	for _, s := range p.segs {
		if s.base <= seg.base {
			continue
		}
		if s == end.seg {
			lag.Bytes += end.pos - fileHeaderSize
			break
		}
		lag.Bytes += s.size.Load() - fileHeaderSize
	}
	return lag, nil
}
