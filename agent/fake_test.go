package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// fakeAgg is a small aggregator for tests: it accepts agents, checks and
// decodes their batches, stores the records per source and acks by the
// rules of wire/doc.go: a batch that starts where the source's stored data
// ends is Appended; one that ends at or before it is a Duplicate; anything
// else gets Resync(stored end). A source seen for the first time is
// accepted at any start. It can hold its acks, fail batches and drop
// connections.
type fakeAgg struct {
	t  testing.TB
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	cond      *sync.Cond
	sources   map[uint64]*fakeSource
	conns     map[*wire.Conn]bool
	nconns    int
	hold      bool              // acks are queued, not sent
	report    *wire.AgentReport // the last AgentReport received
	failNext  int               // answer the next n batches Failed
	dropEvery int               // close the connection after every n-th batch, before its ack
	frames    int
	appended  int
	dups      int
	resyncs   int
	errs      []string
	closed    bool
	discard   bool // benchmarks: check CRCs and ack Appended, store nothing
	countOnly bool // benchmarks: only count the ranges (no CRC check) and ack Appended
	bytesIn   int64
	rawIn     int64 // countOnly: file bytes of the batches received
	// Max frame announced in the Welcome, and the one enforced on reads
	// (0: the wire default); a frame above it is refused with an Error
	// frame (CodeProtocol), as the aggregator does.
	welcomeMaxFrame uint32
	readMaxFrame    int
}

type fakeSource struct {
	id      uint64
	agent   string
	topic   string
	path    string
	end     int64
	records []string
	ends    []int64 // range end of each appended batch
	counts  []int   // records of each appended batch
}

func newFakeAgg(t testing.TB) *fakeAgg {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgg{t: t, ln: ln, sources: map[uint64]*fakeSource{}, conns: map[*wire.Conn]bool{}}
	f.cond = sync.NewCond(&f.mu)
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeAgg) addr() string { return f.ln.Addr().String() }

func (f *fakeAgg) close() {
	f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.NetConn().Close()
	}
	f.cond.Broadcast()
	f.mu.Unlock()
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		f.t.Errorf("fake aggregator: %s", e)
	}
}

func (f *fakeAgg) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.serve(nc)
	}
}

func (f *fakeAgg) errorf(format string, a ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, a...))
}

// conn is one agent connection: this goroutine reads and decides, a
// second one writes the queued acks.
func (f *fakeAgg) serve(nc net.Conn) {
	defer f.wg.Done()
	f.mu.Lock()
	welcomeMax, readMax := f.welcomeMaxFrame, f.readMaxFrame
	f.mu.Unlock()
	if welcomeMax == 0 {
		welcomeMax = wire.DefaultMaxFrame
	}
	c := wire.NewConn(nc, readMax)
	defer nc.Close()
	h, err := c.ServerHandshake(0)
	if err != nil {
		return
	}
	if h.Role != wire.RoleAgent {
		c.WriteError(wire.CodeAuth, "agents only")
		return
	}
	if err := c.Accept(wire.Welcome{Version: h.Version, Aggregator: "fake", MaxFrame: welcomeMax}); err != nil {
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.conns[c] = true
	f.nconns++
	f.mu.Unlock()

	q := &ackQueue{}
	f.wg.Add(1)
	go f.writeAcks(c, q)
	defer func() {
		f.mu.Lock()
		q.dead = true
		delete(f.conns, c)
		f.cond.Broadcast()
		f.mu.Unlock()
	}()

	dec, err := batch.NewDecoder()
	if err != nil {
		f.t.Error(err)
		return
	}
	defer dec.Close()
	for {
		t, p, err := c.ReadFrame()
		if errors.Is(err, wire.ErrFrameTooBig) {
			// Stop the ack writer, then refuse, as the aggregator does.
			f.mu.Lock()
			q.dead = true
			f.cond.Broadcast()
			for q.writing {
				f.cond.Wait()
			}
			f.mu.Unlock()
			c.WriteError(wire.CodeProtocol, err.Error())
			return
		}
		if err != nil {
			return
		}
		if t == wire.TypeAgentReport {
			var r wire.AgentReport
			if err := r.Decode(p); err != nil {
				f.mu.Lock()
				f.errorf("agent report: %v", err)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.report = &r
			f.mu.Unlock()
			continue
		}
		if t == wire.TypeHeartbeat {
			// Answered in order with the acks, as the aggregator does
			// (held with them, too).
			var hb wire.Heartbeat
			if err := hb.Decode(p); err != nil {
				f.mu.Lock()
				f.errorf("heartbeat: %v", err)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			q.acks = append(q.acks, fakeOut{heartbeat: true, nonce: hb.Nonce})
			f.cond.Broadcast()
			f.mu.Unlock()
			continue
		}
		if t != wire.TypeProduce {
			f.mu.Lock()
			f.errorf("unexpected frame %s", t)
			f.mu.Unlock()
			return
		}
		seq, b, err := wire.DecodeProduce(p)
		if err != nil {
			f.mu.Lock()
			f.errorf("produce: %v", err)
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		if q.failed {
			// Like the aggregator: after a Failed ack nothing more from
			// this connection is stored or acked; the agent must close.
			f.mu.Unlock()
			continue
		}
		ack := f.produce(h.ID, seq, b, dec)
		q.failed = ack.Status == wire.AckFailed
		f.frames++
		drop := f.dropEvery > 0 && f.frames%f.dropEvery == 0
		if !drop {
			q.acks = append(q.acks, fakeOut{ack: ack})
			f.cond.Broadcast()
		} else {
			// Let the acks of earlier batches out first: the drop hits
			// this batch, sent and stored but never acknowledged.
			for (len(q.acks) > 0 || q.writing) && !f.hold && !q.dead && !f.closed {
				f.cond.Wait()
			}
		}
		f.mu.Unlock()
		if drop {
			return
		}
	}
}

type ackQueue struct {
	acks    []fakeOut
	writing bool
	dead    bool
	failed  bool // a Failed ack was queued: ignore the rest of the connection
}

// fakeOut is what the fake aggregator sends back, in order: an ack, or
// the answer to a heartbeat.
type fakeOut struct {
	ack       wire.ProduceAck
	heartbeat bool
	nonce     uint64
}

func (f *fakeAgg) writeAcks(c *wire.Conn, q *ackQueue) {
	defer f.wg.Done()
	var buf []byte
	for {
		f.mu.Lock()
		for !q.dead && !f.closed && (f.hold || len(q.acks) == 0) {
			f.cond.Wait()
		}
		if q.dead || f.closed {
			f.mu.Unlock()
			return
		}
		acks := q.acks
		q.acks = nil
		q.writing = true
		f.mu.Unlock()
		var err error
		for _, out := range acks {
			if out.heartbeat {
				buf = (&wire.Heartbeat{Nonce: out.nonce}).Encode(buf[:0])
				err = c.WriteFrame(wire.TypeHeartbeat, buf)
			} else {
				buf = out.ack.Encode(buf[:0])
				err = c.WriteFrame(wire.TypeProduceAck, buf)
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			err = c.Flush()
		}
		f.mu.Lock()
		q.writing = false
		f.cond.Broadcast()
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// produce checks and stores one batch; f.mu is held.
func (f *fakeAgg) produce(agent string, seq uint64, b []byte, dec *batch.Decoder) wire.ProduceAck {
	ack := wire.ProduceAck{Seq: seq}
	if f.countOnly && len(b) >= 75 {
		// Range start and end are at offsets 59 and 67 (batch/doc.go).
		f.bytesIn += int64(len(b))
		f.rawIn += int64(binary.BigEndian.Uint64(b[67:]) - binary.BigEndian.Uint64(b[59:]))
		f.cond.Broadcast()
		ack.Status = wire.AckAppended
		return ack
	}
	h, err := batch.Parse(b)
	if err != nil {
		f.errorf("batch %d: %v", seq, err)
		ack.Status, ack.Message = wire.AckFailed, err.Error()
		return ack
	}
	f.bytesIn += int64(len(b))
	if f.discard {
		ack.Status, ack.StoredEnd = wire.AckAppended, h.RangeEnd
		return ack
	}
	if h.Agent != agent {
		f.errorf("batch agent %q on a connection of %q", h.Agent, agent)
	}
	if f.failNext > 0 {
		f.failNext--
		ack.Status, ack.Message = wire.AckFailed, "disk full (test)"
		return ack
	}
	src := f.sources[h.SourceID]
	if src == nil {
		src = &fakeSource{id: h.SourceID, agent: h.Agent, topic: h.Topic, end: h.RangeStart}
		f.sources[h.SourceID] = src
	}
	if src.topic != h.Topic {
		f.errorf("source %016x: topic %q, was %q", h.SourceID, h.Topic, src.topic)
	}
	src.path = h.Path
	switch {
	case h.RangeEnd <= src.end:
		f.dups++
		ack.Status, ack.StoredEnd = wire.AckDuplicate, src.end
	case h.RangeStart == src.end:
		var n int64
		var recs []string
		err := dec.Decode(b, &h, func(r batch.Record) error {
			recs = append(recs, string(r.Data))
			n += int64(len(r.Data))
			return nil
		})
		if err != nil {
			f.errorf("decode batch %d: %v", seq, err)
		}
		// The range is the records' bytes plus the newline that ended each
		// record that had one (a cut line or a partial last line has none).
		if span := h.RangeEnd - h.RangeStart; span < n || span > n+int64(len(recs)) {
			f.errorf("source %016x (%s): batch [%d, %d) holds %d bytes in %d records", h.SourceID, h.Path, h.RangeStart, h.RangeEnd, n, len(recs))
		}
		src.records = append(src.records, recs...)
		src.ends = append(src.ends, h.RangeEnd)
		src.counts = append(src.counts, len(recs))
		src.end = h.RangeEnd
		f.appended++
		ack.Status, ack.StoredEnd = wire.AckAppended, src.end
	default:
		f.resyncs++
		ack.Status, ack.StoredEnd = wire.AckResync, src.end
	}
	return ack
}

func (f *fakeAgg) setHold(v bool) {
	f.mu.Lock()
	f.hold = v
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *fakeAgg) setFrameLimits(welcome uint32, read int) {
	f.mu.Lock()
	f.welcomeMaxFrame, f.readMaxFrame = welcome, read
	f.mu.Unlock()
}

func (f *fakeAgg) setFailNext(n int) {
	f.mu.Lock()
	f.failNext = n
	f.mu.Unlock()
}

func (f *fakeAgg) setDropEvery(n int) {
	f.mu.Lock()
	f.dropEvery = n
	f.mu.Unlock()
}

// snapshot returns a copy of the stored sources.
func (f *fakeAgg) snapshot() map[uint64]*fakeSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[uint64]*fakeSource, len(f.sources))
	for id, s := range f.sources {
		c := *s
		c.records = append([]string(nil), s.records...)
		c.ends = append([]int64(nil), s.ends...)
		c.counts = append([]int(nil), s.counts...)
		out[id] = &c
	}
	return out
}

// seed makes f know sources as another aggregator stored them, cut back
// to their first keep batches.
func (f *fakeAgg) seed(from map[uint64]*fakeSource, keep int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, s := range from {
		c := &fakeSource{id: id, agent: s.agent, topic: s.topic, path: s.path}
		n := 0
		for i := 0; i < keep && i < len(s.ends); i++ {
			n += s.counts[i]
			c.end = s.ends[i]
			c.ends = append(c.ends, s.ends[i])
			c.counts = append(c.counts, s.counts[i])
		}
		c.records = append([]string(nil), s.records[:n]...)
		f.sources[id] = c
	}
}

type fakeCounts struct{ conns, appended, dups, resyncs, records int }

func (f *fakeAgg) counts() fakeCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fakeCounts{conns: f.nconns, appended: f.appended, dups: f.dups, resyncs: f.resyncs}
	for _, s := range f.sources {
		c.records += len(s.records)
	}
	return c
}
