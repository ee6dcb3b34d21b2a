package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// ack is what an agent connection's appender hands its writer: the outcome
// of one Produce, or (fatal set) an Error frame to send before closing.
type ack struct {
	wire.ProduceAck
	p    *logstore.Partition // nil for Failed acks that never reached a partition
	wait int64               // WaitDurable(wait) before sending

	fatal bool // send an Error frame with code and msg, then close
	code  wire.ErrorCode
	msg   string

	heartbeat bool // answer a Heartbeat with nonce, in order with the acks
	nonce     uint64
}

// resyncKey names a source on one connection.
type resyncKey struct {
	topic string
	sourceKey
}

// The read-ahead of a pipelined agent connection: the frames its reader
// may have read and handed on while the appender works. The reader waits
// for room before it reads a frame, and the queue takes a frame while the
// buffers it holds (those the appender took and is not done with
// included) are under readAheadBytes, so a connection holds at most
// readAheadBytes plus two frames (the last one queued, the one being
// read) of batches, and none while it is idle; and as only
// GOMAXPROCS/2 connections are pipelined, the server holds at most that
// many read-aheads, plus what the connections not pipelined gather beyond
// one frame each (at most GOMAXPROCS read-aheads in all: gather). Half a queue (8 batches of 32 KiB, each in a 64 KiB
// buffer) is the slack the reader has when it is woken again: more than a
// wake-up takes on a loaded 2-core virtual machine, so reads and appends
// keep overlapping.
const (
	readAheadFrames = 16
	readAheadBytes  = 1 << 20
)

// appenderSpin is how long the appender of a pipelined connection yields
// its processor, looking for a frame, before it parks (see queue): about
// two batches' time at full speed, so that it stays running across the
// gaps between the reader's frames. Only GOMAXPROCS/2 connections are
// pipelined, so at most half the processors spin, and each for no longer
// than this when its connection goes quiet. Measured with one connection
// (BenchmarkIngest/fsync=never/conns=1, 24 interleaved rounds against
// parking at once, benchstat): 28.0 to 24.3 µs per batch (-13%,
// p=0.002); CPU per GB not significantly changed (+3%, p=0.49).
const appenderSpin = 50 * time.Microsecond

// ackWake is how many acks the appender queues before it wakes a waiting
// writer, unless it runs out of frames to append first: the writer then
// sends them with one write, and the agent gets them in one read. So an
// ack waits for at most ackWake-1 appends behind it, and only while the
// agent keeps the appender busy: an agent whose window holds fewer than
// twice that many batches (the default holds 64) sees its acks later.
const ackWake = 8

// inFrame is what an agent connection's reader hands its appender: one
// checked frame (the appender releases it), a bad frame (fatal set), or
// the read error that stopped the reader. It is the last one when err or
// fatal is set.
type inFrame struct {
	f wire.Frame

	// A Produce: its seq, its batch (in f.Payload) and the checked header.
	produce bool
	seq     uint64
	b       []byte
	h       batch.Header

	heartbeat bool // a Heartbeat with nonce
	nonce     uint64

	report *wire.AgentReport // an AgentReport

	fatal  bool // a bad frame: close with an Error frame
	reason rejectReason
	code   wire.ErrorCode
	msg    string

	err error // the read failed
}

// agentConn is one agent connection. When it is pipelined (see
// pipelineAgent) three goroutines, joined by bounded queues, each own a
// part of it:
//   - the reader (readLoop) owns the reads: it reads each frame into a
//     pooled buffer, checks it (frame type, batch CRC and header, topic,
//     agent id) and hands it on through in, in order;
//   - the appender (appendLoop, on the connection's goroutine) owns the
//     dedup marks of the connection (resyncing) and the appends; it turns
//     each frame into an ack, in order, and releases its buffer;
//   - the writer (writeLoop) owns the writes: it waits for durability and
//     sends the acks.
//
// So the reader reads and checks the next batches while the appender
// appends this one. Each stage closes its output queue when it stops.
// When it is not pipelined, the connection's goroutine is the reader and
// the appender, and the writer has its own.
type agentConn struct {
	s    *Server
	c    *wire.Conn
	nc   net.Conn
	id   string // the agent id from the Hello
	log  *slog.Logger
	in   *queue[inFrame] // reader to appender; nil when not pipelined
	acks *queue[ack]     // appender to writer
	// resyncing holds the sources this connection was told to resync and
	// that have not resumed at their stored end yet. Appender only.
	resyncing map[resyncKey]struct{}
	// group, ackBuf and scratch are the appender's working memory for
	// the batches it appends together (handleProduce, produce).
	group   []inFrame
	ackBuf  []ack
	scratch groupScratch
	// gathered: the frames a connection that is not pipelined has read
	// to append together (gather).
	gathered       []inFrame
	gatheredWeight int
	entry          *agentEntry // what status reports of this connection
	// discarding is set by the appender after a Failed append: the
	// appender then drops every frame it gets (see handle), and the reader
	// drops what it reads.
	discarding atomic.Bool
}

// serveAgent runs an agent session until the agent leaves, sends something
// bad, or ctx is done. It returns once its goroutines have stopped and the
// connection is closed.
func (s *Server) serveAgent(ctx context.Context, c *wire.Conn, id string, log *slog.Logger) {
	a := &agentConn{s: s, c: c, nc: c.NetConn(), id: id, log: log, resyncing: make(map[resyncKey]struct{})}
	a.entry = s.agents.add(id, a.nc.RemoteAddr().String(), time.Now())
	defer s.agents.remove(a.entry)
	pipelined := pipelineAgent(s.stats.openAgents.Load())
	wake := 1 // not pipelined: no appender tells the writer when it ran out of frames
	if pipelined {
		a.in = newQueue[inFrame](readAheadFrames, readAheadBytes, 1)
		a.in.spin = appenderSpin
		wake = ackWake
	}
	a.acks = newQueue[ack](ackQueue, 0, wake)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(a.writeLoop)
	if !pipelined {
		// This goroutine reads and appends. A bad frame or a read error
		// it gathered behind a batch that then failed stopped the
		// reads before they saw the failure: drain, as appendLoop does.
		a.readLoop(func(it inFrame) { a.gather(ctx, it) })
		if a.discarding.Load() {
			a.drain()
		}
		a.acks.close()
		return
	}
	wg.Go(a.readAhead)
	// The appender stops when in is closed, so after the reader; the
	// writer stops when the appender closes acks.
	a.appendLoop(ctx)
}

// pipelineAgent says whether an agent connection, opened when openAgents
// agent connections (itself included) are open, gets a reader goroutine
// of its own, for good. A pipelined connection can keep two cores busy
// (reads on one, appends on the other) but costs a goroutine wake-up per
// batch or so; when the connections outnumber half the cores they keep
// the cores busy anyway, and the wake-ups only cost CPU (10% more per
// batch with 64 connections on 2 cores). So while no more than
// GOMAXPROCS/2 agents are connected, a new connection is pipelined;
// after that it reads and appends on one goroutine.
func pipelineAgent(openAgents int64) bool {
	return 2*openAgents <= int64(runtime.GOMAXPROCS(0))
}

// readAhead is the reader of a pipelined connection: it queues the frames
// for the appender, weighed by the buffers they hold, and closes the queue
// when it stops.
func (a *agentConn) readAhead() {
	defer a.in.close()
	a.readLoop(func(it inFrame) { a.in.put(it, it.weight()) })
}

// readLoop reads frames, checks them and hands each to next, in order,
// until a read fails or a frame is bad, which it hands on last. In a
// pipelined connection it waits for room in the queue before each read,
// so that it takes a frame's buffer only when there is a place for it. At
// shutdown (ctx done) a read deadline in the past ends it. After a Failed
// append (discarding) it reads without timeouts and drops what it reads,
// until the agent closes or the limit set with the Failed ack
// (failedDrain) ends the reads.
func (a *agentConn) readLoop(next func(inFrame)) {
	for {
		discarding := a.discarding.Load()
		if discarding {
			a.c.SetReadTimeouts(0, 0)
		}
		if a.in != nil {
			a.in.waitRoom()
		} else if a.s.beforeTakeHook != nil {
			a.s.beforeTakeHook(a.id)
		}
		f, err := a.c.ReadOwnedFrame()
		if err != nil {
			next(inFrame{err: err})
			return
		}
		if discarding {
			f.Release()
			continue
		}
		a.s.stats.wireIn.Add(int64(len(f.Payload)) + 5)
		it := a.check(f)
		next(it)
		if it.fatal {
			return
		}
	}
}

// check turns a frame read from an agent into what the appender needs:
// a Produce with a batch that batch.Parse accepts (its CRC among the
// rest), of a valid topic and of this agent; a Heartbeat or an
// AgentReport (version 2). Anything else is fatal. Only a Produce keeps
// f, for the appender to release; check releases every other frame.
func (a *agentConn) check(f wire.Frame) inFrame {
	it, keep := a.decode(f)
	if !keep {
		f.Release()
	}
	return it
}

// decode is check's work; keep says whether the result holds f.
func (a *agentConn) decode(f wire.Frame) (it inFrame, keep bool) {
	bad := func(r rejectReason, code wire.ErrorCode, msg string) (inFrame, bool) {
		return inFrame{fatal: true, reason: r, code: code, msg: msg}, false
	}
	p := f.Payload
	switch {
	case f.Type == wire.TypeHeartbeat && a.c.Version() >= 2:
		var hb wire.Heartbeat
		if err := hb.Decode(p); err != nil {
			return bad(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("heartbeat: %v", err))
		}
		return inFrame{heartbeat: true, nonce: hb.Nonce}, false
	case f.Type == wire.TypeAgentReport && a.c.Version() >= 2:
		r := new(wire.AgentReport)
		if err := r.Decode(p); err != nil { // it copies what it keeps
			return bad(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("agent report: %v", err))
		}
		return inFrame{report: r}, false
	case f.Type != wire.TypeProduce:
		return bad(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("unexpected %s frame from an agent", f.Type))
	}
	seq, b, err := wire.DecodeProduce(p)
	if err != nil {
		return bad(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("produce: %v", err))
	}
	h, err := batch.Parse(b)
	if err != nil {
		return bad(rejectBatch, wire.CodeProtocol, fmt.Sprintf("produce seq %d: bad batch: %v", seq, err))
	}
	if err := batch.CheckName("topic", h.Topic); err != nil {
		return bad(rejectBatch, wire.CodeBadRequest, fmt.Sprintf("produce seq %d: %v", seq, err))
	}
	if h.Agent != a.id {
		// Dedup state is keyed by the batch's agent id: an agent must
		// not write into another agent's sources.
		return bad(rejectBatch, wire.CodeBadRequest, fmt.Sprintf("produce seq %d: batch of agent %q on the connection of agent %q", seq, h.Agent, a.id))
	}
	return inFrame{f: f, produce: true, seq: seq, b: b, h: h}, true
}

// appendLoop is the appender of a pipelined connection: it hands the
// reader's frames to handle, in order, and closes acks when the reader
// has closed in. The Produce frames queued one after the other for the
// same partition go together (handleProduce: one write for all). Before
// it waits for a frame it lets the writer send the acks it queued.
func (a *agentConn) appendLoop(ctx context.Context) {
	defer a.acks.close()
	var held inFrame // a frame taken from in that did not join the group before it
	holding := false
	for {
		it, ok := held, true
		if holding {
			held, holding = inFrame{}, false
		} else {
			if a.in.empty() {
				a.acks.flush()
			}
			if a.s.beforeTakeHook != nil {
				a.s.beforeTakeHook(a.id)
			}
			it, ok = a.in.get()
		}
		if !ok {
			if a.discarding.Load() {
				a.drain()
			}
			return
		}
		if !it.produce {
			a.handle(ctx, it)
			a.in.done(heldWeight(held, holding))
			continue
		}
		id := a.partitionOf(&it.h)
		group := append(a.group[:0], it)
		for len(group) < maxGroup {
			next, ok := a.in.tryGet()
			if !ok {
				break
			}
			if !a.joins(id, &it, &next) {
				held, holding = next, true
				break
			}
			group = append(group, next)
		}
		a.handleProduce(group, id)
		clear(group)
		a.group = group[:0]
		a.in.done(heldWeight(held, holding))
	}
}

// gather is how a connection that is not pipelined hands its frames on:
// while the next frame has come whole (wire's FrameReady), so that
// reading it cannot wait, it keeps the Produce frames it read, up to
// maxGroup of them and readAheadBytes of buffers, and while the frames
// all such connections keep come to less than the server's gatherBudget
// (GOMAXPROCS read-aheads: only that many connections run at once, and
// one whose append waits for another's on the same partition keeps what
// it has); then it handles them in
// order, those for one partition one after the other together, as the
// appender of a pipelined connection does with its queue (appendLoop).
// So a connection that sends faster than one append at a time gets its
// batches written with one pwritev, without a goroutine of its own; and
// it never waits for the network holding frames.
func (a *agentConn) gather(ctx context.Context, it inFrame) {
	a.gathered = append(a.gathered, it)
	if w := it.weight(); it.produce && len(a.gathered) < maxGroup && a.gatheredWeight+w < readAheadBytes &&
		a.s.gathered.Load()+int64(w) < a.s.gatherBudget && a.c.FrameReady() {
		// Kept: counted here and server wide until handled. A frame
		// handled at once is never counted, so a connection that does
		// not gather touches no shared counter.
		a.gatheredWeight += w
		a.s.gathered.Add(int64(w))
		return
	}
	items := a.gathered
	for len(items) > 0 {
		it := items[0]
		if !it.produce {
			a.handle(ctx, it)
			items = items[1:]
			continue
		}
		id := a.partitionOf(&it.h)
		n := 1
		for n < len(items) && a.joins(id, &it, &items[n]) {
			n++
		}
		a.handleProduce(items[:n], id)
		items = items[n:]
	}
	clear(a.gathered)
	if a.gatheredWeight > 0 {
		a.s.gathered.Add(-int64(a.gatheredWeight))
	}
	a.gathered, a.gatheredWeight = a.gathered[:0], 0
}

// joins says whether next may be appended in the group that first, a
// Produce bound for partition id, begins: a Produce of the same topic and
// partition (appendLoop, gather).
func (a *agentConn) joins(id int, first, next *inFrame) bool {
	return next.produce && next.h.Topic == first.h.Topic && a.partitionOf(&next.h) == id
}

// heldWeight is the weight the read-ahead queue counts for the frame the
// appender holds, if it holds one.
func heldWeight(held inFrame, holding bool) int {
	if !holding {
		return 0
	}
	return held.weight()
}

// weight is what a frame weighs in the read-ahead queue: the buffer it
// holds.
func (it *inFrame) weight() int { return cap(it.f.Payload) }

// maxGroup bounds the batches appended together: the read-ahead queue
// holds no more.
const maxGroup = readAheadFrames

// partitionOf returns the partition of a batch's source (dedup's
// partitionFor).
func (a *agentConn) partitionOf(h *batch.Header) int {
	return a.s.dedup.topic(h.Topic).partitionFor(sourceKey{agent: h.Agent, source: h.SourceID}, a.s.dedup.partitions)
}

// drain reads and drops what the agent still sends after a Failed append
// whose reader had already stopped, on a bad frame or a read error it met
// reading ahead (or, not pipelined, gathering), before it could see
// discarding: without it the writer would close with the agent's batches
// unread, and the kernel's reset could destroy the Failed ack. It drops
// bytes, not frames: the reader may have stopped in the middle of one (a
// frame over the size limit is refused at its header, a stalled one cut
// at the frame timeout), and what follows is then no frame header. The
// reader has closed in (or is the caller), so the appender may read; the
// reads end when the agent closes, at the limit handle set with the
// Failed ack (failedDrain), or at once at shutdown (an interrupted
// Conn's deadline is in the past).
func (a *agentConn) drain() {
	io.Copy(io.Discard, a.nc)
}

// handle does what a frame from the reader asks, in order: it appends a
// batch and queues its ack (or a Heartbeat's answer) for the writer,
// giving the frame's buffer back once the append copied it into the log.
// At shutdown (ctx done) the reader stops at once; the frames it had
// already read are still appended, and the writer acks them once durable.
// Only the appender calls it (in a connection that is not pipelined, the
// one goroutine that reads and appends).
func (a *agentConn) handle(ctx context.Context, it inFrame) {
	if a.discarding.Load() {
		it.f.Release()
		return
	}
	switch {
	case it.err != nil:
		a.readError(ctx, it.err)
	case it.fatal:
		a.fatal(it.reason, it.code, it.msg)
	case it.heartbeat:
		a.acks.put(ack{heartbeat: true, nonce: it.nonce}, 0)
	case it.report != nil:
		a.entry.report(it.report)
	case it.produce:
		g := append(a.group[:0], it)
		a.handleProduce(g, a.partitionOf(&it.h))
		clear(g)
		a.group = g[:0]
	}
}

// handleProduce appends a group of valid batches bound for partition id,
// in order (one, or what the appender found queued: appendLoop), and
// queues their acks for the writer, giving the frames' buffers back once
// the appends copied them into the log. After a Failed ack it queues none
// for the batches behind: see below.
func (a *agentConn) handleProduce(group []inFrame, id int) {
	if a.discarding.Load() {
		for i := range group {
			group[i].f.Release()
		}
		return
	}
	acks := a.produce(group, id)
	now := time.Now()
	for i := range acks { // not those dropped behind a Failed one
		h := &group[i].h
		a.s.stats.batchesIn.Add(1)
		a.s.stats.bytesIn.Add(int64(len(group[i].b)))
		a.entry.batch(h.Topic, len(group[i].b), h.RawLen, now)
	}
	for i := range group {
		group[i].f.Release()
	}
	for _, ack := range acks {
		a.acks.put(ack, 0)
		if ack.Status == wire.AckFailed {
			// The agent pipelines its batches: the ones it sent after
			// this one start where this one ends, and storing them would
			// leave the failed range behind as a gap that the agent's
			// resend then meets as a "duplicate". Store nothing more:
			// the writer sends the acks queued so far, this one last,
			// while the frames already read are dropped and the reader
			// reads and drops what the agent still sends until it
			// closes, for at most failedDrain (closing at once instead
			// would make the kernel answer the agent's unread batches
			// with a reset, which can destroy the Failed ack before the
			// agent reads it). The agent then reconnects and resends
			// from its acked positions.
			a.log.Warn("closing agent connection after a failed append", "topic", group[0].h.Topic, "seq", ack.Seq)
			a.discarding.Store(true)
			a.c.LimitReads(time.Now().Add(failedDrain))
			break
		}
	}
}

// readError decides what a failed read means and logs it.
func (a *agentConn) readError(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil:
		// Shutdown: stop reading; what was read is acked by the writer,
		// which then says why the connection closes, so that the agent
		// knows the aggregator is going away rather than the network.
		a.acks.put(ack{fatal: true, code: wire.CodeUnavailable, msg: msgShuttingDown}, 0)
	case errors.Is(err, io.EOF):
		a.log.Debug("agent disconnected")
	case errors.Is(err, net.ErrClosed):
		// The writer closed the connection after a failed write.
	case errors.Is(err, wire.ErrFrameTooBig), errors.Is(err, wire.ErrMalformed):
		a.fatal(rejectProtocol, wire.CodeProtocol, err.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		a.fatal(rejectProtocol, wire.CodeProtocol, "truncated frame: "+err.Error())
	case errors.Is(err, wire.ErrIdle):
		a.fatal(rejectIdle, wire.CodeTimeout, err.Error())
	case errors.Is(err, wire.ErrSlowFrame):
		a.fatal(rejectSlow, wire.CodeTimeout, err.Error())
	default:
		a.log.Warn("agent connection lost", "err", err)
	}
}

// fatal logs why the connection is being closed and queues the Error frame
// behind the acks already queued, so that batches stored before the bad
// frame are still acknowledged. The reader has stopped: the writer may
// read (closeAfterError) once it sent the Error frame.
func (a *agentConn) fatal(r rejectReason, code wire.ErrorCode, msg string) {
	a.s.stats.reject(r)
	a.log.Warn("closing agent connection", "err", msg)
	a.acks.put(ack{fatal: true, code: code, msg: msg}, 0)
}

// produce runs the dedup checks and the appends of a group of valid
// batches bound for partition id, in order, and returns their acks: one
// per batch, or up to the first Failed one. The batches are in pooled
// buffers that the caller releases after: the appends copy them into the
// log before produce returns. The group is decided as its batches would
// be one after the other: each check sees the sources' stored ends as the
// batches accepted before it in the group leave them (pending, until the
// group is written), and this connection's resync marks as they change.
func (a *agentConn) produce(group []inFrame, id int) []ack {
	s := a.s
	topic := group[0].h.Topic
	t := s.dedup.topic(topic)
	acks := a.ackBuf[:0]
	for i := range group {
		acks = append(acks, ack{ProduceAck: wire.ProduceAck{Seq: group[i].seq, Partition: uint32(id), BaseOffset: -1}})
	}
	a.ackBuf = acks
	failed := func(i int, err error) []ack {
		h := &group[i].h
		s.stats.failed.Add(1)
		a.log.Error("append failed", "topic", topic, "partition", id, "agent", h.Agent, "source", h.SourceID, "err", err)
		acks[i].Status = wire.AckFailed
		acks[i].Message = err.Error()
		acks[i].BaseOffset = -1
		return acks[:i+1]
	}
	p, err := s.store.Partition(topic, id)
	if err != nil {
		return failed(0, err)
	}

	g := &a.scratch
	g.reset(len(group))
	defer g.release() // keeps no batch of the group: their buffers are the pool's again
	for i := range group {
		g.bs[i], g.hs[i] = group[i].b, &group[i].h
	}
	key := func(h *batch.Header) sourceKey { return sourceKey{agent: h.Agent, source: h.SourceID} }
	lock := t.appendLock(id)
	began := time.Now()
	lock.Lock()
	n, err := p.AppendGroup(g.bs, g.hs, func(i int, h *batch.Header) (bool, error) {
		k := key(h)
		rk := resyncKey{topic: topic, sourceKey: k}
		st, known := g.pendingState(k)
		if !known {
			st, known = t.get(k)
		}
		_, resyncing := a.resyncing[rk]
		d := decideOn(st, known, h, resyncing)
		g.decisions[i], g.decided[i] = d, true
		switch d.status {
		case wire.AckAppended:
			g.pending = append(g.pending, pendingSource{k, sourceState{partition: id, storedEnd: h.RangeEnd}})
			delete(a.resyncing, rk)
		case wire.AckResync:
			a.resyncing[rk] = struct{}{}
		}
		return d.status == wire.AckAppended, nil
	}, g.res)
	for i := range n {
		if g.res[i].Written {
			t.set(key(g.hs[i]), sourceState{partition: id, storedEnd: g.hs[i].RangeEnd})
		}
	}
	lock.Unlock()
	s.stats.appendLatency.observe(time.Since(began))

	for i := range n {
		h, d, res := g.hs[i], g.decisions[i], g.res[i]
		if !g.decided[i] {
			return failed(i, errors.New("BUG: logstore AppendGroup went past a batch without calling the check"))
		}
		out := &acks[i]
		out.p, out.wait = p, res.Next
		switch d.status {
		case wire.AckAppended:
			if !res.Written {
				return failed(i, errors.New("BUG: logstore AppendGroup did not write a batch the check accepted"))
			}
			s.stats.appended.Add(1)
			out.Status = wire.AckAppended
			out.StoredEnd = h.RangeEnd
			out.BaseOffset = res.BaseOffset
			if d.gap {
				s.stats.gaps.Add(1)
				a.log.Info("source skipped bytes; stored after a gap", "topic", topic, "partition", id,
					"agent", h.Agent, "source", h.SourceID, "path", h.Path, "from", d.storedEnd, "to", h.RangeStart)
			}
		case wire.AckDuplicate:
			s.stats.duplicates.Add(1)
			out.Status = wire.AckDuplicate
			out.StoredEnd = d.storedEnd
		case wire.AckResync:
			s.stats.resyncs.Add(1)
			out.Status = wire.AckResync
			out.StoredEnd = d.storedEnd
			a.log.Debug("resync", "topic", topic, "partition", id, "agent", h.Agent, "source", h.SourceID,
				"range_start", h.RangeStart, "range_end", h.RangeEnd, "stored_end", d.storedEnd)
		}
	}
	if err != nil {
		return failed(n, err)
	}
	return acks
}

// groupScratch is produce's working memory, kept by the connection for
// its room (appender only).
type groupScratch struct {
	bs        [][]byte
	hs        []*batch.Header
	res       []logstore.Appended
	decisions []decision
	decided   []bool
	pending   []pendingSource // stored ends the group's accepted batches leave, in order
}

// pendingSource is a source's state once a batch of the group is written.
type pendingSource struct {
	k  sourceKey
	st sourceState
}

func (g *groupScratch) reset(n int) {
	g.bs = slices.Grow(g.bs[:0], n)[:n]
	g.hs = slices.Grow(g.hs[:0], n)[:n]
	g.res = slices.Grow(g.res[:0], n)[:n]
	g.decisions = slices.Grow(g.decisions[:0], n)[:n]
	g.decided = slices.Grow(g.decided[:0], n)[:n]
	clear(g.decided)
	clear(g.pending)
	g.pending = g.pending[:0]
}

// release drops what the scratch holds of a group's batches.
func (g *groupScratch) release() {
	clear(g.bs)
	clear(g.hs)
}

// pendingState returns the state the group's batches accepted so far
// leave source k in, if they include one of k's.
func (g *groupScratch) pendingState(k sourceKey) (sourceState, bool) {
	for i := len(g.pending) - 1; i >= 0; i-- {
		if g.pending[i].k == k {
			return g.pending[i].st, true
		}
	}
	return sourceState{}, false
}

// writeLoop sends acks in the order the appender queued them, each once its
// batch (for Duplicate and Resync: everything the partition held when it
// was decided) is durable. It flushes when it is about to block, so acks
// that became durable together leave in one write. After a failed write it
// closes the connection (which stops the reader, and so the appender)
// and drains the queue without writing. It closes the connection when the
// queue is closed.
func (a *agentConn) writeLoop() {
	dead := false
	kill := func(what string, err error) {
		if !dead {
			dead = true
			a.log.Warn("agent connection lost", "while", what, "err", err)
			a.nc.Close()
		}
	}
	var enc []byte
	for {
		it, ok := a.acks.get()
		if !ok {
			break
		}
		if dead {
			continue
		}
		if it.fatal {
			a.nc.SetWriteDeadline(a.s.writeDeadline())
			if err := a.c.WriteError(it.code, it.msg); err != nil {
				kill("sending error", err)
				continue
			}
			// The reader has stopped (a fatal ack comes after its last
			// frame): this goroutine may read now.
			closeAfterError(a.c)
			dead = true
			a.nc.Close()
			continue
		}
		if it.heartbeat {
			a.s.stats.heartbeats.Add(1)
			enc = (&wire.Heartbeat{Nonce: it.nonce}).Encode(enc[:0])
			a.nc.SetWriteDeadline(a.s.writeDeadline())
			if err := a.c.WriteFrame(wire.TypeHeartbeat, enc); err != nil {
				kill("sending heartbeat", err)
				continue
			}
			a.s.stats.wireOut.Add(int64(len(enc)) + 5)
			if a.acks.empty() {
				if err := a.c.Flush(); err != nil {
					kill("flushing acks", err)
				}
			}
			continue
		}
		if it.p != nil && it.Status != wire.AckFailed {
			if it.p.End() < it.wait && a.c.Buffered() > 0 {
				// About to wait for an fsync: send what is ready first.
				a.nc.SetWriteDeadline(a.s.writeDeadline())
				if err := a.c.Flush(); err != nil {
					kill("flushing acks", err)
					continue
				}
			}
			began := time.Now()
			err := it.p.WaitDurable(it.wait)
			a.s.stats.durableLatency.observe(time.Since(began))
			if err != nil {
				a.s.stats.failed.Add(1)
				a.log.Error("batch not durable", "topic", it.p.Topic(), "partition", it.Partition, "seq", it.Seq, "err", err)
				it.Status = wire.AckFailed
				it.Message = err.Error()
				it.BaseOffset = -1
			}
		}
		enc = it.ProduceAck.Encode(enc[:0])
		a.nc.SetWriteDeadline(a.s.writeDeadline())
		if err := a.c.WriteFrame(wire.TypeProduceAck, enc); err != nil {
			kill("sending ack", err)
			continue
		}
		a.s.stats.wireOut.Add(int64(len(enc)) + 5)
		if a.acks.empty() {
			if err := a.c.Flush(); err != nil {
				kill("flushing acks", err)
			}
		}
	}
	if !dead {
		a.nc.SetWriteDeadline(a.s.writeDeadline())
		if err := a.c.Flush(); err != nil {
			a.log.Warn("agent connection lost", "while", "flushing acks", "err", err)
		}
		a.nc.Close()
	}
}

// errorDrain bounds how long a connection closed with an Error frame
// waits for the client to close its side.
const errorDrain = time.Second

// closeAfterError is called once an Error frame was sent, by the one
// goroutine reading c (its reads must be over). It half-closes the
// connection, then reads and drops whatever the client still sends until
// it closes, for at most errorDrain; the caller then closes. Closing at
// once could leave unread bytes (frames the client pipelined, the rest of
// a frame too large to read) in the socket, and the kernel answers those
// with a reset, which can destroy the Error frame, and the acks before it,
// before the client reads them. At shutdown too: a client closes when it
// reads the Error frame, so a shutdown waits that long, and errorDrain at
// most, for the acks to reach the agents.
func closeAfterError(c *wire.Conn) {
	nc := c.NetConn()
	closeWrite(nc)
	nc.SetReadDeadline(time.Now().Add(errorDrain))
	io.Copy(io.Discard, nc)
}

// msgShuttingDown is what the Error frame (CodeUnavailable) says to a
// client whose connection the aggregator closes because it stops.
const msgShuttingDown = "aggregator shutting down"

// closeWrite half-closes a connection (a FIN, or TLS's close_notify), so
// that the peer reads what was sent, then EOF, rather than a reset.
func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
