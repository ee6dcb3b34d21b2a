package agent

import (
	"bytes"
	"hash/crc64"
	"io"
	"time"

	"logship/logstore/batch"
)

// The tailer: reading files and cutting batches. Everything here runs in
// the loop goroutine.
//
// A source is read only when a batch is due: when it has at least
// BatchBytes unread, or when its first unread bytes were seen BatchWait ago.
// Then its unread complete lines are read with big positional reads into
// one shared buffer, added to one shared batch.Builder and cut into batches
// of BatchBytes; a batch is built and handed to the connection as soon as
// it is full. Lines left over that do not fill a batch are shipped too when
// the read was due by age, and otherwise forgotten (the Builder is reset)
// and read again later: the file is the buffer, so no source holds lines in
// memory between two turns. An incomplete last line is never shipped; it is
// read again once the file grows.

// windowRoom reports whether the window admits another batch: it has room
// for a full one, or nothing is in flight (so that one batch always fits).
func (a *Agent) windowRoom() bool {
	if a.flights.len() >= maxInFlight {
		return false
	}
	return a.inflightBytes == 0 || a.inflightBytes+int64(a.opts.BatchBytes) <= int64(a.opts.WindowBytes)
}

// noteWindow counts the time the window stays full, for Stats. Loop
// goroutine: tailPass calls it at each turn, and acks wake the loop.
func (a *Agent) noteWindow(now time.Time) {
	a.inflight.Store(a.inflightBytes)
	full := !a.windowRoom()
	switch {
	case full && a.fullSince.IsZero():
		a.fullSince = now
	case !full && !a.fullSince.IsZero():
		a.windowFull.Add(int64(now.Sub(a.fullSince)))
		a.fullSince = time.Time{}
	}
}

// tailPass gives each source that is due a turn, round-robin. It reports
// whether some source has more to read right away.
func (a *Agent) tailPass(now time.Time) (busy bool) {
	if a.sess == nil || a.sess.draining {
		return false // nothing is read while there is no connection, or while it drains to move home
	}
	if a.needSave || a.lastAgg != a.savedAgg {
		// On failure, the sources it names wait for the next try, and so
		// does everything while it does not name this session's
		// aggregator: a crash would then take the agent back to the one
		// it names, which would store again what this one has.
		if err := a.savePositions(); err != nil && a.lastAgg != a.savedAgg {
			return false
		}
	}
	a.noteWindow(now)
	n := len(a.order)
	a.rr++
	for i := range n {
		if !a.windowRoom() {
			a.noteWindow(now)
			return false // backpressure: acks wake the loop
		}
		s := a.order[(a.rr+i)%n]
		if s.busy || !now.Before(s.nextCheck) {
			a.service(s, now)
			busy = busy || s.busy
		}
	}
	return busy
}

// service checks one source for new bytes and reads it if a batch is due.
func (a *Agent) service(s *source, now time.Time) {
	s.busy = false
	s.nextCheck = now.Add(a.opts.PollInterval)
	if s.switchTo != nil {
		if s.inflight > 0 {
			return // switch at a point where everything sent is acknowledged
		}
		a.log.Info("switching file to another topic", s.attrs("to_topic", s.switchTo.Topic, "pos", s.acked)...)
		s.in, s.topic, s.switchTo = s.switchTo, s.switchTo.Topic, nil
		a.posDirty = true
		ok := a.moveReadPos(s, s.acked, now)
		s.partialSize = 0
		s.publish()
		if !ok {
			return // truncated: started again, under the new topic
		}
	}
	if s.stopping || s.unsaved {
		return // see reload and savePositions
	}
	fi, err := s.f.Stat()
	if err != nil {
		a.log.Warn("stat failed", s.attrs("err", err)...)
		return
	}
	size := fi.Size()
	s.stats.acked.Store(s.acked)
	if size < s.readPos {
		a.truncated(s, size, now, "size below read position")
	}
	s.stats.size.Store(size)
	if s.unsaved {
		return // read once the new identity is saved
	}
	if !s.hasID {
		if size == 0 {
			return
		}
		if err := a.identify(s, size); err != nil {
			a.log.Warn("fingerprint failed", s.attrs("err", err)...)
			return
		}
	} else if s.fpLen < fingerprintMax && size > int64(s.fpLen) {
		a.refreshFingerprint(s, size, now)
		if s.unsaved {
			return
		}
	}
	if size == s.readPos {
		s.pendingSince = time.Time{}
		return
	}
	if s.readPos == 0 && s.hasID && !a.sameStart(s, size) {
		a.startChanged(s, size, now)
		return
	}
	if size == s.partialSize {
		// Only held bytes follow readPos: a multiline record waiting for
		// the line that ends it, and/or a last line without its newline.
		// Each is shipped when its timeout passes.
		due, force, partial := a.heldDue(s, now)
		if !now.Before(due) {
			a.readSource(s, now, true, force, partial)
			return
		}
		if due.Before(s.nextCheck) {
			s.nextCheck = due
		}
		return
	}
	if size == s.heldAt {
		// Read again up to the same held bytes (the read position went
		// back: a session lost, a Resync): if their timeout ran, they
		// are due now, with everything before them, rather than after a
		// batch wait and one more turn, which a connection that drops
		// often would never give them.
		if due, force, partial := a.heldDue(s, now); !now.Before(due) {
			a.readSource(s, now, true, force, partial)
			return
		}
	}
	if s.pendingSince.IsZero() {
		s.pendingSince = now
	}
	byAge := now.Sub(s.pendingSince) >= a.opts.BatchWait
	if !byAge && size-s.readPos < int64(a.sess.limits.batchBytes) {
		if due := s.pendingSince.Add(a.opts.BatchWait); due.Before(s.nextCheck) {
			s.nextCheck = due
		}
		return
	}
	a.readSource(s, now, byAge, false, false)
}

// heldDue returns when s's held bytes (see source.partialSize) are due,
// and the cutter's force and partial for a read at now. A multiline
// record among them waits for its own timeout, even past PartialTimeout:
// an incomplete line after it may be the line that continues it.
func (a *Agent) heldDue(s *source, now time.Time) (due time.Time, force, partial bool) {
	wait := a.opts.PartialTimeout
	mlHeld := s.heldLines && s.in.ml != nil
	if mlHeld {
		wait = s.in.ml.timeout
	}
	partial = now.Sub(s.heldSince) >= a.opts.PartialTimeout
	return s.heldSince.Add(wait), mlHeld || partial, partial
}

// startChanged handles a file whose first bytes are no longer those its
// fingerprint covers: it was truncated and written again. A source
// under whose identity nothing was ever shipped, and that was never
// resumed from the positions file, was rewritten before it was read: it
// takes the identity of what it holds now, so that a copy of the old
// content (copytruncate's) can still match a ghost of nothing. Any other
// is a truncation, which leaves a ghost: bytes sent under the old
// identity may be stored by the aggregator although never acknowledged
// (the session dropped before the ack and the read position went back to
// 0), and only the ghost lets the copy resume that identity rather than
// ship them again under a new one.
func (a *Agent) startChanged(s *source, size int64, now time.Time) {
	if s.shipped || s.readPos != 0 || s.acked != 0 {
		a.truncated(s, size, now, "content of the first bytes changed")
		return
	}
	a.log.Info("file rewritten before it was read: new identity", s.attrs("size", size)...)
	if err := a.identify(s, size); err != nil {
		return
	}
	a.markUnsaved(s)
}

// sameStart reports whether s's file still begins with the bytes its
// fingerprint covers.
func (a *Agent) sameStart(s *source, size int64) bool {
	if size < int64(s.fpLen) {
		return false
	}
	fp, err := fingerprintN(s.f, s.fpLen, a.fpBuf)
	return err != nil || fp == s.fp
}

// readSource reads s from its read position and ships batches, until it
// reaches the end of the file, the window fills, or it had its fair share.
// With flushTail, records that do not fill a batch are shipped too. Force
// and partial are the cutter's (see there): the held bytes at the end of
// the file are shipped. Batches and records keep to the session's frame
// limits: a record that would take a batch past rawMax goes to the next
// batch, and a line longer than the line limit is cut into records of that
// size (nothing is dropped).
func (a *Agent) readSource(s *source, now time.Time, flushTail, force, partial bool) {
	ts := now.UnixNano()
	b := a.builder
	lim := &a.sess.limits
	c := cutter{ml: s.in.ml, lineMax: min(lim.lineMax, a.opts.MaxLineBytes), force: force, partial: partial}
	bufMax := c.lineMax + 1
	if c.ml != nil {
		c.recMax = min(c.ml.maxBytes, lim.lineMax)
		bufMax += c.recMax + 1
	}
	if !a.guardHolds(s) {
		a.truncated(s, s.stats.size.Load(), now, "the bytes before the read position changed")
		return
	}
	if c.ml != nil && s.readPos > 0 {
		// Reading on from a cut inside a long line (or from a partial
		// line shipped at its timeout): what follows up to the newline
		// is a record of its own, not the start of a multiline record.
		var prev [1]byte
		if n, _ := s.f.ReadAt(prev[:], s.readPos-1); n == 1 && prev[0] != '\n' {
			c.midLine = true
		}
	}
	pos := s.readPos // file offset of the next byte to add
	start := pos     // range start of the batch being built
	var bufOff int64 // file offset of a.buf[0]
	var bufN int
	budget := fairShare
	atEOF := false
	s.partialSize = 0
read:
	for budget > 0 {
		n, err := s.f.ReadAt(a.buf, pos)
		if err != nil && err != io.EOF {
			a.log.Warn("read failed", s.attrs("err", err, "offset", pos)...)
			break
		}
		bufOff, bufN = pos, n
		budget -= n
		data := a.buf[:n]
		full := n == len(a.buf)
		canGrow := full && len(a.buf) < bufMax
		c.eof = !full
		for len(data) > 0 {
			// A timeout forces out the last record of the file only; a
			// full buffer that cannot grow forces out its first.
			c.force = (force && !full) || (full && !canGrow && len(data) == n)
			rec, adv, cut := c.next(data)
			if adv == 0 {
				break // data is the start of a record not complete yet
			}
			if cut != notCut {
				a.recordsSplit.Add(1)
				if !s.warnedLong {
					s.warnedLong = true
					limit, lmax := c.cutLimit(cut, a.opts.MaxLineBytes)
					a.log.Warn("line or multiline record longer than a limit: cut into several records", s.attrs("limit", limit, "max", lmax, "offset", pos)...)
				}
			}
			if b.Count() > 0 && b.RawSize()+len(rec)+recordOverhead > lim.rawMax {
				a.ship(s, start, pos)
				start = pos
				if !a.windowRoom() {
					break read
				}
			}
			b.Add(ts, rec)
			pos += int64(adv)
			data = data[adv:]
			if b.RawSize() >= lim.batchBytes {
				a.ship(s, start, pos)
				start = pos
				if !a.windowRoom() {
					break read
				}
			}
		}
		if !full {
			atEOF = true
			if len(data) > 0 && flushTail {
				s.partialSize = pos + int64(len(data))
				s.heldLines = bytes.IndexByte(data, '\n') >= 0
				if s.partialSize != s.heldAt {
					s.heldSince, s.heldAt = now, s.partialSize
				}
			}
			break
		}
		if len(data) == n && canGrow {
			// Not one record in a full buffer: read more at once.
			a.buf = make([]byte, min(2*len(a.buf), bufMax))
			bufN = 0 // the bytes read are gone with the old buffer
		}
	}
	if b.Count() > 0 {
		if flushTail {
			a.ship(s, start, pos)
		} else {
			b.Reset() // read again on a later turn
		}
	}
	// Keep the bytes before the new read position for the next turn's
	// check: from this read when it still has them, else from the file
	// (the bytes just read; a grown buffer dropped them).
	if g := int(min(s.readPos, guardMax)); s.readPos-int64(g) >= bufOff && s.readPos <= bufOff+int64(bufN) {
		i := int(s.readPos - bufOff)
		s.guardLen, s.guardFP = g, crc64.Checksum(a.buf[i-g:i], crcTable)
		s.guardPos = s.readPos
	} else if s.guardPos != s.readPos {
		a.seedGuard(s)
	}
	switch {
	case !atEOF:
		s.busy = true // budget or window ran out: more to read
	case flushTail:
		s.pendingSince = time.Time{}
		if s.partialSize > 0 {
			s.nextCheck = now // set the held bytes' timer
		}
	default:
		// Lines left that do not fill a batch: due when they are old
		// enough.
		if due := s.pendingSince.Add(a.opts.BatchWait); due.Before(s.nextCheck) {
			s.nextCheck = due
		}
	}
}

// maxPathLen bounds the path carried in a batch (it is for humans).
const maxPathLen = batch.MaxStringLen

func (a *Agent) getBuf() *[]byte {
	if p, ok := a.bufPool.Get().(*[]byte); ok {
		return p
	}
	// Room for an incompressible batch, except with zstd: log lines
	// compress 4 to 10 times, and a batch that does not fit grows its
	// buffer once (kept when recycled). The capacity of the buffers in
	// flight counts in the heap the GC paces itself on, so in peak RSS.
	n := a.opts.BatchBytes + a.opts.BatchBytes/8 + 1024
	if a.opts.Compression == batch.Zstd {
		n = a.opts.BatchBytes/4 + 1024
	}
	b := make([]byte, 0, n)
	return &b
}

func (a *Agent) putBuf(p *[]byte) {
	if cap(*p) > 4*a.opts.BatchBytes+a.opts.MaxLineBytes {
		return // an outsize batch: let it go
	}
	a.bufPool.Put(p)
}
