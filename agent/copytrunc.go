package agent

import (
	"bytes"
	"slices"
	"time"

	"logship/internal/wire"
)

// copytruncate while the agent runs (doc.go, "copytruncate"). logrotate's
// copytruncate copies the file to a new name, then truncates the original
// in place. The copy is a new file (another inode) holding the source's
// content; the original goes on as new content from offset 0. So:
//
//   - When a source is truncated, its identity and its last position with
//     a tail fingerprint are kept for a while as a ghost (also in the
//     positions file, under device and inode 0, so that a restarted agent
//     can still match the copy).
//   - A new file that holds a ghost's content (first bytes, length, bytes
//     before the position: the rule of a restart) resumes the ghost's
//     source at that position, under its id: what it sends again, the
//     aggregator drops as duplicates.
//   - A new file that looks like a copy in progress (its bytes so far are
//     those of a live source, or the first bytes of a ghost's) is held,
//     open but unread, while it grows and for copyWait after, so that the
//     truncation that follows a copy can make the ghost it is matched
//     against. A held file that turns out to be no copy is then read as a
//     new source.
//
// Everything here runs in the loop goroutine.

// ghost is the identity of a truncated source, for its copy to resume.
type ghost struct {
	topic   string
	e       posEntry  // identity, and the position to resume at (its tail fingerprinted)
	unread  int64     // bytes the file had past the read position when it was truncated
	made    time.Time // when the truncation was seen: a copy is older
	expires time.Time
	// lost counts the bytes of its batches in flight at the truncation
	// that turned out not stored (lost with their session, or refused):
	// given up with unread if no copy claims the ghost (see ghostFlight).
	lost  int64
	state ghostState
}

// ghostState is where a ghost stands: waiting for its copy, claimed by
// one (which sends everything from the ghost's position again), or
// expired (its bytes given up).
type ghostState uint8

const (
	ghostWaiting ghostState = iota
	ghostClaimed
	ghostExpired
)

// ghostFlight is a batch that was in flight when its source was truncated.
// The truncation drops it (its ack no longer moves the source, which
// starts again at 0), but its bytes are no longer in the file: if the
// aggregator never stores it (the session ends before its ack, or the
// ack is not Appended or Duplicate) and no copy claims the ghost, they
// are lost, and must be counted and logged, not forgotten.
type ghostFlight struct {
	g     *ghost
	sess  *session // the session it was sent in
	bytes int64
}

// heldCopy is a new file that may be a copy in progress.
type heldCopy struct {
	nf    *newFile
	since time.Time // when it last grew
}

// copyWait and ghostTTL bound how long a possible copy is held after it
// stopped growing, and how long a truncated source waits for its copy.
func (a *Agent) copyWait() time.Duration { return max(2*a.opts.ScanInterval, time.Second) }
func (a *Agent) ghostTTL() time.Duration { return max(5*a.opts.ScanInterval, 10*time.Second) }

// addGhost keeps s's identity before a truncation resets it.
func (a *Agent) addGhost(s *source, now time.Time) {
	if !s.hasID || s.fpLen == 0 {
		return
	}
	g := &ghost{topic: s.topic, made: now, expires: now.Add(a.ghostTTL())}
	g.e = posEntry{ID: hex64(s.id), Topic: s.topic, Path: s.path, FP: hex64(s.fp), FPLen: s.fpLen, Salt: hex64(s.salt), hasTail: true}
	if s.tailPos >= 0 {
		g.e.Pos, g.e.TailFP, g.e.TailLen = s.tailPos, hex64(s.tailFP), s.tailLen
	}
	g.unread = max(s.stats.size.Load()-s.readPos, 0)
	g.e.high = max(s.sentHigh, s.acked)
	// Its batches in flight, about to be dropped (truncated calls
	// dropFlights next): their outcome decides whether their bytes were
	// stored (see ghostFlight).
	for _, f := range a.flights.all() {
		if f.src == s && !f.dropped && f.gen == s.gen && a.sess != nil {
			if a.ghostFlights == nil {
				a.ghostFlights = make(map[uint64]ghostFlight)
			}
			a.ghostFlights[f.seq] = ghostFlight{g: g, sess: a.sess, bytes: f.end - f.start}
		}
	}
	a.ghosts = append(a.ghosts, g)
	a.posDirty = true
}

// ack applies one ack (handleAck), after noting the outcome of a batch
// that was in flight when its source was truncated (see ghostFlight).
// Loop goroutine; every ack the loop takes goes through here.
func (a *Agent) ack(m ackMsg) {
	if len(a.ghostFlights) > 0 && m.s == a.sess && a.flights.len() > 0 && a.flights.peek().seq == m.ack.Seq {
		if gf, ok := a.ghostFlights[m.ack.Seq]; ok {
			delete(a.ghostFlights, m.ack.Seq)
			if m.ack.Status != wire.AckAppended && m.ack.Status != wire.AckDuplicate {
				a.ghostFlightLost(gf)
			}
		}
	}
	a.handleAck(m)
	a.settleGhostFlights()
}

// lostSession handles the end of the current session (sessionLost),
// applying the acks already queued through ack first, so that a batch of
// a truncated source acknowledged before the connection dropped is known
// stored. Loop goroutine.
func (a *Agent) lostSession() {
	for s, more := a.sess, true; more && a.sess == s && len(a.ghostFlights) > 0; {
		select {
		case m := <-a.ackCh:
			a.ack(m)
		default:
			more = false
		}
	}
	a.sessionLost()
	a.settleGhostFlights()
}

// settleGhostFlights gives up the batches of truncated sources whose
// session ended before their ack: nothing says the aggregator stored
// them (if it did, the count is an overestimate, never a silent loss).
// Loop goroutine, after anything that may end a session.
func (a *Agent) settleGhostFlights() {
	for seq, gf := range a.ghostFlights {
		if gf.sess != a.sess {
			delete(a.ghostFlights, seq)
			a.ghostFlightLost(gf)
		}
	}
}

// ghostFlightLost counts the bytes of a batch of a truncated source that
// was not stored: kept on its ghost while it waits for a copy, forgotten
// if a copy claimed it (the copy sends them again), given up at once if
// the ghost expired already.
func (a *Agent) ghostFlightLost(gf ghostFlight) {
	switch gf.g.state {
	case ghostWaiting:
		gf.g.lost += gf.bytes
	case ghostExpired:
		a.log.Warn("truncated file's batch in flight was not stored and no copy of the file was found: giving up its bytes",
			"topic", gf.g.topic, "source", gf.g.e.Path, "bytes", gf.bytes)
		a.givenUp.Add(gf.bytes)
	}
}

// claimGhost returns, and forgets, the ghost of nf's topic whose content
// nf holds, and whose copy nf may be (see bornAfter).
func (a *Agent) claimGhost(nf *newFile) *ghost {
	for i, g := range a.ghosts {
		if g.topic == nf.in.Topic && !bornAfter(nf, g) && nf.probe.holds(&g.e) {
			a.ghosts = slices.Delete(a.ghosts, i, i+1)
			g.state = ghostClaimed
			return g
		}
	}
	return nil
}

// moveSafe reports whether the agent may move to another aggregator, once
// its batches in flight are acknowledged, without the other storing
// anything the current one may hold: no source sent the current one more
// than is acknowledged or in flight (a session lost with batches the
// aggregator stored, which are sent again after the reconnect), and no
// entry a file may still resume from (a copytruncate's ghost, one a
// reload released) lies below what its source had sent. A file resuming
// at an entry's position sends those bytes again: the current aggregator
// drops them as duplicates, another would store them (see startSource,
// which carries the entry's high into the resumed source). Loop goroutine.
func (a *Agent) moveSafe() bool {
	for _, g := range a.ghosts {
		if g.e.high > g.e.Pos {
			return false
		}
	}
	for _, e := range a.released {
		if e.high > e.Pos {
			return false
		}
	}
	inflight := make(map[*source]int64)
	for _, f := range a.flights.all() {
		if !f.dropped && f.gen == f.src.gen {
			inflight[f.src] = max(inflight[f.src], f.end)
		}
	}
	for _, s := range a.order {
		if s.sentHigh > max(s.acked, inflight[s]) {
			return false
		}
	}
	return true
}

// tailsAcked fingerprints every source's tail at its acknowledged
// position and reports whether all of them are there (a file that shrank
// keeps its old tail: its truncation is about to be seen). A ghost made
// later resumes at that position, so after a move it does not resend what
// only the aggregator left behind holds. Loop goroutine.
func (a *Agent) tailsAcked() bool {
	ok := true
	for _, s := range a.order {
		if s.f == nil || !s.hasID {
			continue
		}
		a.updateTail(s)
		if s.tailPos != s.acked {
			ok = false
		}
	}
	return ok
}

// newAggregator forgets what was sent to the aggregator the agent leaves:
// the next one holds nothing of it yet (sentHigh, entries' high).
func (a *Agent) newAggregator() {
	for _, s := range a.order {
		s.sentHigh = 0
	}
	for _, g := range a.ghosts {
		g.e.high = 0
	}
	for k, e := range a.released {
		e.high = 0
		a.released[k] = e
	}
}

// bornAfter reports whether nf was created after the truncation that
// made g was seen, by its birth time. Such a file cannot be g's copy:
// copytruncate creates the copy before it truncates. This is what tells
// a copy from another file that merely begins with the same bytes (a CSV
// header) when g's position lies within them: both hold g's content.
// File time stamps come from the kernel's coarse clock, which is a tick
// (a few ms) off the clock the agent reads, either way: on a busy virtual
// machine a copy made before the truncation was seen to be born up to 5ms
// after it. So only a file born more than birthSlack after the truncation
// was seen is ruled out; one created within that is not told apart (and
// a copy looks born after only when the clock is stepped back, or the
// copy is on another machine's file system: it is then shipped again
// rather than lost). (The truncated file's own ctime is no better
// reference: it is not always moved by the truncation and the writes
// before it.) Without a birth time (file system, platform) nothing is
// ruled out.
func bornAfter(nf *newFile, g *ghost) bool {
	b, ok := birthTime(nf.f)
	return ok && time.Unix(b.sec, int64(b.nsec)).After(g.made.Add(birthSlack))
}

// birthSlack is how far a file's birth time may lie past the agent's
// clock at the moment the file had already been created (bornAfter).
const birthSlack = 50 * time.Millisecond

// mayBeCopy reports whether nf may be a copy in progress of a live source
// or of a ghost of its topic: its bytes so far are theirs.
func (a *Agent) mayBeCopy(nf *newFile) bool {
	if nf.size == 0 {
		return false
	}
	for _, g := range a.ghosts {
		if g.topic != nf.in.Topic || nf.size >= g.e.Pos && nf.size >= int64(g.e.FPLen) || bornAfter(nf, g) {
			continue // too short to be a ghost's copy, or long enough to be matched already
		}
		if nf.size < int64(g.e.FPLen) {
			return true // cannot tell yet
		}
		if fp, ok := nf.probe.fp(g.e.FPLen); ok && fp == uint64(g.e.FP) {
			return true
		}
	}
	for _, s := range a.order {
		if s.topic != nf.in.Topic || !s.hasID || s.f == nil || s.key == nf.key {
			continue
		}
		if a.sameBytes(nf, s) {
			return true
		}
	}
	return false
}

// sameBytes reports whether nf may be a copy of s, maybe in progress: its
// first bytes are s's, and its last bytes are those of s's file at the
// same offsets, or s's file is shorter now (it may be being truncated: the
// copy is then held until the truncation is seen).
func (a *Agent) sameBytes(nf *newFile, s *source) bool {
	k := int(min(nf.size, int64(s.fpLen)))
	fp, ok := nf.probe.fp(k)
	if !ok {
		return false
	}
	if k == s.fpLen {
		if fp != s.fp {
			return false
		}
	} else if sfp, err := fingerprintN(s.f, k, a.fpBuf); err != nil {
		return true // s shrank below k bytes: truncated
	} else if sfp != fp {
		return false
	}
	n := int(min(nf.size, fingerprintMax))
	x, y := make([]byte, n), make([]byte, n)
	off := nf.size - int64(n)
	if m, _ := nf.f.ReadAt(x, off); m < n {
		return false
	}
	if m, _ := s.f.ReadAt(y, off); m < n {
		return true // s is shorter than nf: truncated
	}
	return bytes.Equal(x, y)
}

// startNew starts the new files of a scan after the first: a file that
// holds a ghost resumes it, one that may be a copy in progress is held,
// the others are new sources.
func (a *Agent) startNew(news []*newFile, now time.Time) {
	for _, nf := range news {
		if e, lost := a.claimReleased(nf); e != nil || lost != nil {
			a.startSource(nf, e, lost, now)
			continue
		}
		if g := a.claimGhost(nf); g != nil {
			a.log.Info("copy of a truncated file (copytruncate): resuming its source", "topic", nf.in.Topic, "source", nf.path, "of", g.e.Path, "pos", g.e.Pos)
			a.startSource(nf, &g.e, nil, now)
			continue
		}
		if a.mayBeCopy(nf) {
			a.log.Debug("new file looks like a copy in progress: holding it", "topic", nf.in.Topic, "source", nf.path, "size", nf.size)
			a.held = append(a.held, &heldCopy{nf: nf, since: now})
			continue
		}
		a.startSource(nf, nil, nil, now)
	}
}

// reviewHeld decides about the held files again: a ghost's copy resumes
// it; one that stopped growing copyWait ago without becoming one is a new
// source.
func (a *Agent) reviewHeld(now time.Time) {
	keep := a.held[:0]
	for _, h := range a.held {
		nf := h.nf
		fi, err := nf.f.Stat()
		if err != nil {
			nf.f.Close()
			continue
		}
		if size := fi.Size(); size != nf.size {
			nf.size, h.since = size, now
			nf.probe = newProbe(nf.f, size, a.fpBuf)
		}
		if g := a.claimGhost(nf); g != nil {
			a.log.Info("copy of a truncated file (copytruncate): resuming its source", "topic", nf.in.Topic, "source", nf.path, "of", g.e.Path, "pos", g.e.Pos)
			a.startSource(nf, &g.e, nil, now)
			continue
		}
		if now.Sub(h.since) < a.copyWait() && a.mayBeCopy(nf) {
			keep = append(keep, h)
			continue
		}
		a.startSource(nf, nil, nil, now)
	}
	clear(a.held[len(keep):])
	a.held = keep
}

// expireGhosts forgets ghosts whose copy did not show up. The bytes their
// file had past the read position when it was truncated are given up:
// they were in neither the copy the agent saw nor the truncated file.
func (a *Agent) expireGhosts(now time.Time) {
	a.ghosts = slices.DeleteFunc(a.ghosts, func(g *ghost) bool {
		if now.Before(g.expires) {
			return false
		}
		g.state = ghostExpired
		if g.unread > 0 || g.lost > 0 {
			a.log.Warn("truncated file had unread bytes and no copy of it was found: giving them up",
				"topic", g.topic, "source", g.e.Path, "bytes", g.unread+g.lost, "unread", g.unread, "in_flight_not_stored", g.lost)
			a.givenUp.Add(g.unread + g.lost)
		}
		a.posDirty = true
		return true
	})
}

// closeHeld closes the held files (at shutdown).
func (a *Agent) closeHeld() {
	for _, h := range a.held {
		h.nf.f.Close()
	}
	a.held = nil
}

// heldKey reports whether a held file has key.
func (a *Agent) heldKey(key fileKey) bool {
	for _, h := range a.held {
		if h.nf.key == key {
			return true
		}
	}
	return false
}
