package agent

import (
	"bytes"
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

// tailPass gives each source that is due a turn, round-robin. It reports
// whether some source has more to read right away.
func (a *Agent) tailPass(now time.Time) (busy bool) {
	if a.sess == nil {
		return false // nothing is read while there is no connection
	}
	n := len(a.order)
	a.rr++
	for i := range n {
		if !a.windowRoom() {
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
	fi, err := s.f.Stat()
	if err != nil {
		a.log.Warn("stat failed", s.attrs("err", err)...)
		return
	}
	size := fi.Size()
	if size < s.readPos {
		a.truncated(s, size, now, "size below read position")
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
	}
	if size == s.readPos || size == s.partialSize {
		if size == s.readPos {
			s.pendingSince = time.Time{}
		}
		return
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
	a.readSource(s, now, byAge)
}

// readSource reads s from its read position and ships batches, until it
// reaches the end of the file, the window fills, or it had its fair share.
// With flushTail, lines that do not fill a batch are shipped too. Batches
// and records keep to the session's frame limits: a record that would take
// a batch past rawMax goes to the next batch, and a line longer than
// lineMax is cut into records of lineMax bytes (nothing is dropped).
func (a *Agent) readSource(s *source, now time.Time, flushTail bool) {
	ts := now.UnixNano()
	b := a.builder
	lim := &a.sess.limits
	pos := s.readPos // file offset of the next byte to add
	start := pos     // range start of the batch being built
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
		budget -= n
		data := a.buf[:n]
		full := n == len(a.buf)
		nl := bytes.IndexByte(data, '\n') // of the next line in data, -1: none
		for {
			var rec []byte
			var adv int // file bytes rec stands for
			switch {
			case nl >= 0 && nl <= lim.lineMax:
				rec, adv = data[:nl], nl+1
			case nl >= 0 || len(data) >= lim.lineMax:
				// A line longer than lineMax: cut it, keep every byte.
				rec, adv = data[:lim.lineMax], lim.lineMax
				if !s.warnedLong {
					s.warnedLong = true
					a.log.Warn("line longer than the maximum: cut into several records", s.attrs("max", lim.lineMax, "offset", pos)...)
				}
			}
			if adv == 0 {
				break // data is the start of an incomplete line
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
			if nl >= 0 { // else there is no newline in data
				if nl -= adv; nl < 0 {
					nl = bytes.IndexByte(data, '\n')
				}
			}
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
			}
			break
		}
		if len(data) == n && len(a.buf) < maxLineBytes {
			// Not one line in a full buffer: read more at once.
			a.buf = make([]byte, min(2*len(a.buf), maxLineBytes))
		}
	}
	if b.Count() > 0 {
		if flushTail {
			a.ship(s, start, pos)
		} else {
			b.Reset() // read again on a later turn
		}
	}
	switch {
	case !atEOF:
		s.busy = true // budget or window ran out: more to read
	case flushTail:
		s.pendingSince = time.Time{}
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

// ship builds the batch of the Builder's records, covering [start, end) of
// s, puts it in flight and hands it to the connection's writer.
func (a *Agent) ship(s *source, start, end int64) {
	lines := a.builder.Count()
	path := s.path
	if len(path) > maxPathLen {
		path = path[len(path)-maxPathLen:]
	}
	bp := a.getBuf()
	out, err := a.builder.Build((*bp)[:0], batch.Meta{
		Agent: a.opts.ID, Topic: s.topic, Path: path,
		SourceID: s.id, RangeStart: start, RangeEnd: end,
	})
	if err != nil {
		// Sizes are bounded by validated options: this cannot happen.
		panic("BUG: agent: build batch: " + err.Error())
	}
	*bp = out
	a.seq++
	a.flights.push(flight{seq: a.seq, src: s, gen: s.gen, start: start, end: end, size: len(out)})
	a.inflightBytes += end - start
	s.inflight++
	s.readPos = end
	// Never blocks: the channel holds maxInFlight batches and at most
	// that many are in flight.
	a.sess.send <- outBatch{seq: a.seq, data: bp}
	a.lines.Add(int64(lines))
	a.rawBytes.Add(end - start)
	a.batches.Add(1)
}

// outBatch is a built batch on its way to the writer.
type outBatch struct {
	seq  uint64
	data *[]byte
}

func (a *Agent) getBuf() *[]byte {
	if p, ok := a.bufPool.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, a.opts.BatchBytes+a.opts.BatchBytes/8+1024)
	return &b
}

func (a *Agent) putBuf(p *[]byte) {
	if cap(*p) > 4*a.opts.BatchBytes+maxLineBytes {
		return // an outsize batch: let it go
	}
	a.bufPool.Put(p)
}
