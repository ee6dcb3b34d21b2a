package logstore

import (
	"errors"
	"fmt"
)

// Group commit.
//
// With FsyncAlways, appends do not fsync; WaitDurable does. Whoever finds
// no fsync in flight becomes the leader: it notes the written end (under
// mu, so every byte below it is completely written), fsyncs the active
// segment without holding mu (appends go on meanwhile), then records the
// new synced offset, moves End and wakes the goroutines that waited for it.
// Those that arrived during the fsync and are still not covered elect the
// next leader among themselves, whose one fsync then covers them all. So
// under concurrent load there is one fsync per group, not per append, and
// no goroutine is needed to drive it.
//
// Sealed segments were fsynced by roll before the active one was created,
// so syncing the active segment is always enough.

// WaitDurable returns once every byte below offset next (an Appended.Next)
// is durable per the policy. With FsyncInterval and FsyncNever it returns at
// once. It returns an error wrapping ErrFailed once an fsync of the
// partition has failed, and ErrClosed if the store was closed before the
// bytes were made durable.
func (p *Partition) WaitDurable(next int64) error {
	if p.opts.Fsync != FsyncAlways {
		return p.failure()
	}
	if w := p.written.Load(); next > w {
		// Nothing would ever cover it: refuse rather than fsync forever.
		return fmt.Errorf("logstore: WaitDurable(%d) past the written end %d of %s-%d", next, w, p.topic, p.id)
	}
	for {
		p.syncMu.Lock()
		if err := p.failure(); err != nil {
			p.syncMu.Unlock()
			return err
		}
		if p.synced >= next {
			p.syncMu.Unlock()
			return nil
		}
		if p.syncing {
			ch := p.syncDone
			p.syncMu.Unlock()
			<-ch
			continue
		}
		p.lead()
		p.syncMu.Unlock()
		if err := p.syncWritten(); err != nil {
			return err
		}
	}
}

// flush fsyncs the partition if it has unsynced bytes and no fsync is in
// flight. The interval flusher calls it. It returns an error only when this
// very fsync failed.
func (p *Partition) flush() error {
	p.syncMu.Lock()
	if p.syncing || p.failure() != nil || p.written.Load() <= p.synced {
		p.syncMu.Unlock()
		return nil
	}
	p.lead()
	p.syncMu.Unlock()
	err := p.syncWritten()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// lead makes the caller the sync leader. Caller holds syncMu and saw
// syncing false.
func (p *Partition) lead() {
	p.syncing = true
	p.syncDone = make(chan struct{})
}

// syncWritten is the leader's work: fsync everything written so far, then
// publish it and step down. Caller called lead.
func (p *Partition) syncWritten() error {
	p.mu.Lock()
	closed := p.closed
	seg := p.active()
	e := endPoint{off: p.next, seg: seg, pos: seg.size.Load()}
	p.mu.Unlock()
	var err error
	if closed {
		// Close has synced, or will wait for us and sync: not our job, and
		// the file may be closed.
		err = ErrClosed
	} else if serr := seg.f.Sync(); serr != nil {
		err = p.fail(fmt.Errorf("sync %s: %w", seg.path, serr))
	}
	p.syncMu.Lock()
	if err == nil {
		p.markSyncedLocked(e)
	}
	p.syncing = false
	close(p.syncDone)
	p.syncMu.Unlock()
	return err
}

// markSynced records that every byte up to e is fsynced.
func (p *Partition) markSynced(e endPoint) {
	p.syncMu.Lock()
	p.markSyncedLocked(e)
	p.syncMu.Unlock()
}

func (p *Partition) markSyncedLocked(e endPoint) {
	if e.off > p.synced {
		p.synced = e.off
	}
	// The recovery point: at equal offsets, the newer segment (a roll
	// fsyncs the new segment's header after the old one's end).
	if e.off > p.durable.off || (e.off == p.durable.off && e.seg.base > p.durable.seg.base) {
		p.durable = e
	}
	// Move End before the waiters are released, so that a batch is
	// readable by the time its append is acknowledged.
	if p.opts.Fsync == FsyncAlways {
		p.advanceEnd(e)
	}
}

// close syncs the partition, writes the active segment's index and closes
// every file. Later calls return ErrClosed; waiters are woken. Safe to call
// more than once.
func (p *Partition) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	seg := p.active()
	e := endPoint{off: p.next, seg: seg, pos: seg.size.Load()}
	p.mu.Unlock()

	// Wait out an fsync in flight, then lead for good: nobody else may touch
	// the files from here on.
	p.syncMu.Lock()
	for p.syncing {
		ch := p.syncDone
		p.syncMu.Unlock()
		<-ch
		p.syncMu.Lock()
	}
	p.lead()
	p.syncMu.Unlock()

	var errs []error
	if err := p.failure(); err != nil {
		errs = append(errs, err) // say so once more: what was not synced may be lost
	} else if err := seg.f.Sync(); err != nil {
		errs = append(errs, p.fail(fmt.Errorf("sync %s: %w", seg.path, err)))
	} else {
		p.markSynced(e)
		if err := p.writeIndex(seg); err != nil {
			errs = append(errs, fmt.Errorf("logstore: write index of %s: %w", seg.path, err))
		}
		// The source table as of the end, for the next Open to replay
		// nothing (doc.go, "Source state"). Only logged: Open falls back.
		if err := p.writeSnapshot(e.off); err != nil {
			p.log.Warn("cannot write source snapshot at close", "offset", e.off, "err", err)
		}
	}
	p.syncMu.Lock()
	p.syncing = false
	close(p.syncDone)
	p.syncMu.Unlock()

	p.rw.Lock()
	p.rclosed = true
	for _, s := range p.segs {
		// Files still used by a Slice close when it is released.
		p.cache.forget(s, s == seg)
	}
	p.rw.Unlock()

	p.endMu.Lock()
	p.endClosed = true
	close(p.endCh)
	p.endMu.Unlock()
	return errors.Join(errs...)
}
