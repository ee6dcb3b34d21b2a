package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// ack is what an agent connection's reader hands its writer: the outcome
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

// agentConn is one agent connection: the reader (readLoop, on the
// connection's goroutine) owns reads, the dedup marks and the appends; the
// writer (writeLoop, its own goroutine) owns writes. They talk through the
// bounded acks channel, which the reader closes when it stops.
type agentConn struct {
	s    *Server
	c    *wire.Conn
	nc   net.Conn
	id   string // the agent id from the Hello
	log  *slog.Logger
	acks chan ack
	// resyncing holds the sources this connection was told to resync and
	// that have not resumed at their stored end yet. Reader only.
	resyncing map[resyncKey]struct{}
	entry     *agentEntry // what status reports of this connection
}

// serveAgent runs an agent session until the agent leaves, sends something
// bad, or ctx is done. It returns once both goroutines have stopped and
// the connection is closed.
func (s *Server) serveAgent(ctx context.Context, c *wire.Conn, id string, log *slog.Logger) {
	a := &agentConn{s: s, c: c, nc: c.NetConn(), id: id, log: log, acks: make(chan ack, ackQueue), resyncing: make(map[resyncKey]struct{})}
	a.entry = s.agents.add(id, a.nc.RemoteAddr().String(), time.Now())
	defer s.agents.remove(a.entry)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.writeLoop()
	}()
	a.readLoop(ctx)
	<-done
}

// readLoop reads Produce frames, appends them and queues their acks. At
// shutdown (ctx done) a read deadline in the past ends it; the appends it
// made are already queued, and the writer acks them once durable.
func (a *agentConn) readLoop(ctx context.Context) {
	defer close(a.acks)
	for {
		t, p, err := a.c.ReadFrame()
		if err != nil {
			a.readError(ctx, err)
			return
		}
		a.s.stats.wireIn.Add(int64(len(p)) + 5)
		if t == wire.TypeHeartbeat && a.c.Version() >= 2 {
			var hb wire.Heartbeat
			if err := hb.Decode(p); err != nil {
				a.fatal(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("heartbeat: %v", err))
				return
			}
			a.acks <- ack{heartbeat: true, nonce: hb.Nonce}
			continue
		}
		if t == wire.TypeAgentReport && a.c.Version() >= 2 {
			var r wire.AgentReport
			if err := r.Decode(p); err != nil {
				a.fatal(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("agent report: %v", err))
				return
			}
			a.entry.report(&r)
			continue
		}
		if t != wire.TypeProduce {
			a.fatal(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("unexpected %s frame from an agent", t))
			return
		}
		seq, b, err := wire.DecodeProduce(p)
		if err != nil {
			a.fatal(rejectProtocol, wire.CodeProtocol, fmt.Sprintf("produce: %v", err))
			return
		}
		h, err := batch.Parse(b)
		if err != nil {
			a.fatal(rejectBatch, wire.CodeProtocol, fmt.Sprintf("produce seq %d: bad batch: %v", seq, err))
			return
		}
		if err := batch.CheckName("topic", h.Topic); err != nil {
			a.fatal(rejectBatch, wire.CodeBadRequest, fmt.Sprintf("produce seq %d: %v", seq, err))
			return
		}
		if h.Agent != a.id {
			// Dedup state is keyed by the batch's agent id: an agent must
			// not write into another agent's sources.
			a.fatal(rejectBatch, wire.CodeBadRequest, fmt.Sprintf("produce seq %d: batch of agent %q on the connection of agent %q", seq, h.Agent, a.id))
			return
		}
		a.s.stats.batchesIn.Add(1)
		a.s.stats.bytesIn.Add(int64(len(b)))
		a.entry.batch(h.Topic, len(b), h.RawLen, time.Now())
		ack := a.produce(seq, b, &h)
		a.acks <- ack
		if ack.Status == wire.AckFailed {
			// The agent pipelines its batches: the ones it sent after this
			// one start where this one ends, and storing them would leave
			// the failed range behind as a gap that the agent's resend
			// then meets as a "duplicate". Stop reading instead: the
			// writer sends the acks queued so far, this one last; the
			// agent then closes, reconnects and resends from its acked
			// positions.
			a.log.Warn("closing agent connection after a failed append", "topic", h.Topic, "seq", seq)
			a.discard(ctx)
			return
		}
	}
}

// discard reads and drops frames until the agent closes the connection,
// for at most failedDrain. Closing at once instead would make the kernel
// answer the agent's unread batches with a reset, which can destroy the
// Failed ack before the agent reads it.
func (a *agentConn) discard(ctx context.Context) {
	a.c.SetReadTimeouts(0, 0)
	a.nc.SetReadDeadline(time.Now().Add(failedDrain))
	if ctx.Err() != nil || a.c.Interrupted() {
		return // shutting down: the deadline in the past may just have been overwritten
	}
	for {
		if _, _, err := a.c.ReadFrame(); err != nil {
			return
		}
	}
}

// readError decides what a failed read means and logs it.
func (a *agentConn) readError(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil:
		// Shutdown: stop reading; what was read is acked by the writer.
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
// frame are still acknowledged.
func (a *agentConn) fatal(r rejectReason, code wire.ErrorCode, msg string) {
	a.s.stats.reject(r)
	a.log.Warn("closing agent connection", "err", msg)
	a.acks <- ack{fatal: true, code: code, msg: msg}
}

// produce runs the dedup check and the append of one valid batch and
// returns its ack. b aliases the connection's read buffer: the append
// copies it into the log before produce returns.
func (a *agentConn) produce(seq uint64, b []byte, h *batch.Header) ack {
	s := a.s
	t := s.dedup.topic(h.Topic)
	k := sourceKey{agent: h.Agent, source: h.SourceID}
	rk := resyncKey{topic: h.Topic, sourceKey: k}
	id := t.partitionFor(k, s.dedup.partitions)
	out := ack{ProduceAck: wire.ProduceAck{Seq: seq, Partition: uint32(id), BaseOffset: -1}}
	failed := func(err error) ack {
		s.stats.failed.Add(1)
		a.log.Error("append failed", "topic", h.Topic, "partition", id, "agent", h.Agent, "source", h.SourceID, "err", err)
		out.Status = wire.AckFailed
		out.Message = err.Error()
		return out
	}
	p, err := s.store.Partition(h.Topic, id)
	if err != nil {
		return failed(err)
	}
	out.p = p

	lock := t.appendLock(id)
	began := time.Now()
	lock.Lock()
	var d decision
	decided := false
	_, resyncing := a.resyncing[rk]
	res, err := p.Append(b, h, func(h *batch.Header) (bool, error) {
		d = t.decide(k, h, resyncing)
		decided = true
		return d.status == wire.AckAppended, nil
	})
	if err == nil && res.Written {
		t.set(k, sourceState{partition: id, storedEnd: h.RangeEnd})
	}
	lock.Unlock()
	s.stats.appendLatency.observe(time.Since(began))

	if err != nil {
		return failed(err)
	}
	if !decided {
		return failed(errors.New("BUG: logstore Append returned without calling the check"))
	}
	out.wait = res.Next
	switch d.status {
	case wire.AckAppended:
		if !res.Written {
			return failed(errors.New("BUG: logstore Append did not write a batch the check accepted"))
		}
		s.stats.appended.Add(1)
		delete(a.resyncing, rk)
		out.Status = wire.AckAppended
		out.StoredEnd = h.RangeEnd
		out.BaseOffset = res.BaseOffset
		if d.gap {
			s.stats.gaps.Add(1)
			a.log.Info("source skipped bytes; stored after a gap", "topic", h.Topic, "partition", id,
				"agent", h.Agent, "source", h.SourceID, "path", h.Path, "from", d.storedEnd, "to", h.RangeStart)
		}
	case wire.AckDuplicate:
		s.stats.duplicates.Add(1)
		out.Status = wire.AckDuplicate
		out.StoredEnd = d.storedEnd
	case wire.AckResync:
		s.stats.resyncs.Add(1)
		a.resyncing[rk] = struct{}{}
		out.Status = wire.AckResync
		out.StoredEnd = d.storedEnd
		a.log.Debug("resync", "topic", h.Topic, "partition", id, "agent", h.Agent, "source", h.SourceID,
			"range_start", h.RangeStart, "range_end", h.RangeEnd, "stored_end", d.storedEnd)
	}
	return out
}

// writeLoop sends acks in the order the reader queued them, each once its
// batch (for Duplicate and Resync: everything the partition held when it
// was decided) is durable. It flushes when it is about to block, so acks
// that became durable together leave in one write. After a failed write it
// closes the connection (which stops the reader) and drains the queue
// without writing. It closes the connection when the queue is closed.
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
	for it := range a.acks {
		if dead {
			continue
		}
		if it.fatal {
			a.nc.SetWriteDeadline(a.s.writeDeadline())
			if err := a.c.WriteError(it.code, it.msg); err != nil {
				kill("sending error", err)
				continue
			}
			// The reader has stopped (a fatal ack is its last): this
			// goroutine may read now.
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
			if len(a.acks) == 0 {
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
		if len(a.acks) == 0 {
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
// with a reset, which can destroy the Error frame before the client reads
// it. At shutdown (c interrupted) it does not wait.
func closeAfterError(c *wire.Conn) {
	nc := c.NetConn()
	closeWrite(nc)
	nc.SetReadDeadline(time.Now().Add(errorDrain))
	if c.Interrupted() {
		return // the deadline in the past may just have been overwritten
	}
	io.Copy(io.Discard, nc)
}

// closeWrite half-closes a connection (a FIN, or TLS's close_notify), so
// that the peer reads what was sent, then EOF, rather than a reset.
func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
