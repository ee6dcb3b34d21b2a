package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"logship/internal/wire"
	"logship/logstore"
)

// peerError is a request the server refuses by closing the connection with
// an Error frame.
type peerError struct {
	reason rejectReason
	code   wire.ErrorCode
	msg    string
}

func (e *peerError) Error() string { return e.msg }

func protocolErr(format string, a ...any) error {
	return &peerError{reason: rejectProtocol, code: wire.CodeProtocol, msg: fmt.Sprintf(format, a...)}
}

// serveConsumer serves a consumer's requests one at a time until it
// leaves, sends something bad, or ctx is done. Consumers never pipeline
// (wire/doc.go), so one goroutine both reads and writes: a writer of its
// own would have nothing to overlap with. A long poll ends when ctx does.
//
// g is what the consumer's token allows: an OffsetReset without the admin
// role, or, from a token limited to some ids, an OffsetCommit, OffsetReset
// or OffsetFetch for a sink other than the Hello's id, closes the
// connection with an auth error.
func (s *Server) serveConsumer(ctx context.Context, c *wire.Conn, g grant, log *slog.Logger) {
	nc := c.NetConn()
	defer nc.Close()
	for {
		in, out := c.ReadBytes, c.WrittenBytes
		t, p, err := c.ReadFrame()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				// Shutdown: say so, so that the sink knows the
				// aggregator is going away rather than the network.
				nc.SetWriteDeadline(s.writeDeadline())
				if c.WriteError(wire.CodeUnavailable, msgShuttingDown) == nil {
					closeAfterError(c)
				}
			case errors.Is(err, io.EOF):
				log.Debug("consumer disconnected")
			case errors.Is(err, wire.ErrFrameTooBig), errors.Is(err, wire.ErrMalformed):
				s.refusePeer(c, log, &peerError{reason: rejectProtocol, code: wire.CodeProtocol, msg: err.Error()})
			case errors.Is(err, io.ErrUnexpectedEOF):
				s.refusePeer(c, log, &peerError{reason: rejectProtocol, code: wire.CodeProtocol, msg: "truncated frame: " + err.Error()})
			case errors.Is(err, wire.ErrIdle):
				s.refusePeer(c, log, &peerError{reason: rejectIdle, code: wire.CodeTimeout, msg: err.Error()})
			case errors.Is(err, wire.ErrSlowFrame):
				s.refusePeer(c, log, &peerError{reason: rejectSlow, code: wire.CodeTimeout, msg: err.Error()})
			default:
				log.Warn("consumer connection lost", "err", err)
			}
			return
		}
		switch t {
		case wire.TypeMetadata:
			err = s.metadata(c, p)
		case wire.TypeFetch:
			err = s.fetch(ctx, c, p, log)
		case wire.TypeOffsetCommit:
			err = s.offsetCommit(c, p, g, log)
		case wire.TypeOffsetForTime:
			err = s.offsetForTime(c, p, log)
		case wire.TypeStatus:
			err = s.status(c, p, g)
		case wire.TypeOffsetReset:
			if !g.admin {
				err = &peerError{reason: rejectAuth, code: wire.CodeAuth,
					msg: fmt.Sprintf("offset reset refused: token %q does not have the admin role", g.token)}
				break
			}
			err = s.offsetReset(c, p, g, log)
		case wire.TypeHeartbeat:
			err = s.heartbeat(c, p)
		case wire.TypeOffsetFetch:
			err = s.offsetFetch(c, p, g)
		default:
			err = protocolErr("unexpected %s frame from a consumer", t)
		}
		if err == nil {
			nc.SetWriteDeadline(s.writeDeadline())
			err = c.Flush()
		}
		s.stats.wireIn.Add(c.ReadBytes - in)
		s.stats.wireOut.Add(c.WrittenBytes - out)
		if err != nil {
			var pe *peerError
			if errors.As(err, &pe) {
				s.refusePeer(c, log, pe)
			} else {
				log.Warn("consumer connection lost", "err", err)
			}
			return
		}
	}
}

// refusePeer logs why a connection is closed, sends the Error frame and
// closes the connection (closeAfterError).
func (s *Server) refusePeer(c *wire.Conn, log *slog.Logger, pe *peerError) {
	s.stats.reject(pe.reason)
	log.Warn("closing connection", "err", pe.msg)
	nc := c.NetConn()
	nc.SetWriteDeadline(s.writeDeadline())
	if c.WriteError(pe.code, pe.msg) == nil {
		closeAfterError(c)
	}
	nc.Close()
}

// heartbeat answers a consumer's Heartbeat (version 2).
func (s *Server) heartbeat(c *wire.Conn, p []byte) error {
	var hb wire.Heartbeat
	if c.Version() < 2 {
		return protocolErr("unexpected %s frame in protocol version %d", wire.TypeHeartbeat, c.Version())
	}
	if err := hb.Decode(p); err != nil {
		return protocolErr("heartbeat: %v", err)
	}
	s.stats.heartbeats.Add(1)
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeHeartbeat, hb.Encode(nil))
}

// metadata answers with every partition of the requested topics (all when
// none is named). Topics that do not exist are simply absent.
func (s *Server) metadata(c *wire.Conn, p []byte) error {
	var m wire.Metadata
	if err := m.Decode(p); err != nil {
		return protocolErr("metadata: %v", err)
	}
	want := make(map[string]bool, len(m.Topics))
	for _, t := range m.Topics {
		want[t] = true
	}
	res := wire.MetadataResult{Req: m.Req, Aggregator: s.opts.ID}
	for _, part := range s.store.Partitions() {
		if len(want) > 0 && !want[part.Topic()] {
			continue
		}
		res.Partitions = append(res.Partitions, wire.PartitionInfo{
			Topic: part.Topic(), Partition: uint32(part.ID()), Start: part.Start(), End: part.End(),
		})
	}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeMetadataResult, res.Encode(nil))
}

// fetch answers one Fetch with the stored batches from the one holding the
// requested offset, at most MaxBytes (capped by the max frame size) but at
// least one batch. At the end of the log it long-polls up to MaxWaitMs
// (capped by MaxFetchWait, ended early by ctx), then answers with what is
// there, possibly nothing. The batches go from the segment file to the
// socket without a copy through user space (logstore.Slice.WriteTo:
// sendfile on a plain TCP connection).
func (s *Server) fetch(ctx context.Context, c *wire.Conn, p []byte, log *slog.Logger) error {
	var f wire.Fetch
	if err := f.Decode(p); err != nil {
		return protocolErr("fetch: %v", err)
	}
	s.stats.fetches.Add(1)
	res := wire.FetchResult{Req: f.Req}
	var sl *logstore.Slice
	part := s.store.Lookup(f.Topic, int(f.Partition))
	if part == nil {
		res.Status = wire.FetchUnknownPartition
	} else {
		var err error
		sl, res.Status, err = s.read(ctx, part, &f)
		if err != nil {
			log.Error("fetch failed", "topic", f.Topic, "partition", f.Partition, "offset", f.Offset, "err", err)
			return &peerError{reason: rejectNone, code: wire.CodeUnavailable, msg: fmt.Sprintf("fetch %s-%d at %d: %v", f.Topic, f.Partition, f.Offset, err)}
		}
		res.Start, res.End = part.Start(), part.End()
	}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	if sl == nil {
		return c.WriteFrame(wire.TypeFetchResult, res.EncodeHeader(nil))
	}
	defer sl.Release()
	s.stats.fetchBytes.Add(sl.Len)
	s.stats.fetchRecords.Add(sl.Next - sl.Start)
	return writeFetchResult(c, &res, sl)
}

// writeFetchResult sends a FetchResult frame whose batches are sl, sent
// from the segment file straight to the socket.
func writeFetchResult(c *wire.Conn, res *wire.FetchResult, sl *logstore.Slice) error {
	return c.WriteFrameTo(wire.TypeFetchResult, res.EncodeHeader(nil), sl, sl.Len)
}

// read is fetch's storage side. A nil Slice with FetchOK means nothing to
// send yet.
func (s *Server) read(ctx context.Context, part *logstore.Partition, f *wire.Fetch) (*logstore.Slice, wire.FetchStatus, error) {
	if f.Offset < part.Start() || f.Offset > part.End() {
		return nil, wire.FetchOutOfRange, nil
	}
	if f.Offset == part.End() && f.MaxWaitMs > 0 {
		wait := min(time.Duration(f.MaxWaitMs)*time.Millisecond, MaxFetchWait)
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := part.Wait(wctx, f.Offset)
		cancel()
		if err != nil && wctx.Err() == nil {
			return nil, 0, err
		}
	}
	maxBytes := int(f.MaxBytes)
	if maxBytes <= 0 || maxBytes > s.maxFrame {
		maxBytes = s.maxFrame
	}
	sl, err := part.ReadSlice(f.Offset, maxBytes)
	if errors.Is(err, logstore.ErrOutOfRange) {
		// Retention moved the start past the offset meanwhile.
		return nil, wire.FetchOutOfRange, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return sl, wire.FetchOK, nil
}

// offsetCommit stores a sink's offset durably before it answers.
func (s *Server) offsetCommit(c *wire.Conn, p []byte, g grant, log *slog.Logger) error {
	var m wire.OffsetCommit
	if err := m.Decode(p); err != nil {
		return protocolErr("offset commit: %v", err)
	}
	if err := g.checkSink("offset commit", m.Sink); err != nil {
		return err
	}
	res := wire.OffsetCommitted{Req: m.Req, Status: wire.CommitOK}
	if err := s.offsets.commit(m.Sink, m.Topic, m.Partition, m.Offset, m.Epoch); err != nil {
		res.Status, res.Message = wire.CommitFailed, err.Error()
		switch {
		case errors.Is(err, errCommitReset):
			res.Status = wire.CommitReset
			log.Info("offset commit under an old epoch refused: the sink will follow the reset", "sink", m.Sink, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		case errors.Is(err, errInvalidCommit):
			res.Status = wire.CommitInvalid
			log.Warn("offset commit refused", "sink", m.Sink, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		default:
			log.Error("offset commit failed", "sink", m.Sink, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		}
	} else {
		s.stats.offsetCommits.Add(1)
	}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeOffsetCommitted, res.Encode(nil))
}

// offsetReset stores an operator's new offset for a sink under the next
// epoch. It does not check the offset against the log: the operator's tool
// resolves times and bounds from the metadata before it asks, and an
// offset out of range is handled by the sink like any other.
func (s *Server) offsetReset(c *wire.Conn, p []byte, g grant, log *slog.Logger) error {
	var m wire.OffsetReset
	if err := m.Decode(p); err != nil {
		return protocolErr("offset reset: %v", err)
	}
	if err := g.checkSink("offset reset", m.Sink); err != nil {
		return err
	}
	res := wire.OffsetCommitted{Req: m.Req, Status: wire.CommitOK}
	epoch, err := s.offsets.reset(m.Sink, m.Topic, m.Partition, m.Offset)
	if err != nil {
		res.Status, res.Message = wire.CommitFailed, err.Error()
		if errors.Is(err, errInvalidCommit) {
			res.Status = wire.CommitInvalid
		}
		log.Warn("offset reset failed", "sink", m.Sink, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
	} else {
		s.stats.offsetResets.Add(1)
		log.Info("offset reset by an operator", "sink", m.Sink, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "epoch", epoch)
	}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeOffsetCommitted, res.Encode(nil))
}

// offsetFetch answers with a sink's committed offsets in a topic; none for
// a sink or topic without commits (or with an invalid name).
func (s *Server) offsetFetch(c *wire.Conn, p []byte, g grant) error {
	var m wire.OffsetFetch
	if err := m.Decode(p); err != nil {
		return protocolErr("offset fetch: %v", err)
	}
	if err := g.checkSink("offset fetch", m.Sink); err != nil {
		return err
	}
	res := wire.Offsets{Req: m.Req, Offsets: s.offsets.committed(m.Sink, m.Topic)}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeOffsets, res.Encode(nil))
}
