package sinks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// Errors returned by a Client. Test with errors.Is and errors.As.
var (
	// ErrUnknownPartition: the aggregator has no such topic or partition.
	ErrUnknownPartition = errors.New("sinks: unknown topic or partition")
	// ErrCommitRefused: the aggregator answered a commit with a failure.
	ErrCommitRefused = errors.New("sinks: commit refused")
	// ErrOffsetReset: a commit was refused because an operator reset the
	// partition's offset (a new epoch) since the sink read it.
	ErrOffsetReset = errors.New("sinks: offset was reset")
	// ErrBroken: an earlier request failed mid-way, so the connection is
	// in an unknown state; dial a new Client.
	ErrBroken = errors.New("sinks: connection broken")
)

// credentialsRefused reports whether err is an aggregator's refusal of the
// sink's credentials in the handshake: a wrong token, or one whose roles or
// ids do not let it connect as this sink (wire.CodeAuth, as the agent
// tells them).
func credentialsRefused(err error) bool { return wire.IsRemote(err, wire.CodeAuth) }

// OutOfRangeError is a fetch at an offset the partition does not hold:
// below Start (deleted by retention) or above End.
type OutOfRangeError struct {
	Aggregator string
	Topic      string
	Partition  int
	Offset     int64
	Start, End int64 // the partition's stored range [Start, End)
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("sinks: offset %d of %s/%s/%d out of range [%d, %d]",
		e.Offset, e.Aggregator, e.Topic, e.Partition, e.Start, e.End)
}

// OpError is a Dial or a request of a Client that failed: which, to which
// aggregator, and why. Err is the cause; when the aggregator refused, a
// *wire.RemoteError is in its chain. Test with errors.As.
type OpError struct {
	Op   string // "connect" for Dial, else the request: "Metadata", "Fetch", "Status", "OffsetReset", ...
	Addr string // the aggregator's address, as dialled
	Err  error
}

func (e *OpError) Error() string { return "sinks: " + e.Op + " to " + e.Addr + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Timeouts of a Client.
const (
	// handshakeTimeout bounds dial and handshake when ctx has no earlier deadline.
	handshakeTimeout = 10 * time.Second
	// requestTimeout bounds a request beyond its long-poll wait.
	requestTimeout = 30 * time.Second
)

// Client is one consumer connection to one aggregator. Requests are sent
// one at a time and wait for their answer; a Client is not safe for
// concurrent use. After a request fails mid-way (I/O error, timeout, ctx
// done) every later request returns ErrBroken: close it and dial again.
type Client struct {
	addr string
	conn *wire.Conn
	agg  string
	req  uint64
	buf  []byte // request encoding buffer
	err  error  // sticky: why the connection is broken
}

// Security is how a consumer connects: over TLS or not, with a token or
// not. The zero value is plain TCP without a token.
type Security struct {
	TLS   *tls.Config // nil: plain TCP; see wire.ClientTLSConfig
	Token string      // sent in the Hello; an aggregator with tokens needs one with the consumer (or admin) role
}

// Dial connects to the aggregator at addr over plain TCP without a token:
// Security{}.Dial.
func Dial(ctx context.Context, addr, name string) (*Client, error) {
	return Security{}.Dial(ctx, addr, name)
}

// Dial connects to the aggregator at addr and performs the handshake as a
// consumer named name, with sec's TLS and token. ctx bounds the dial and
// the handshake. A failure is an *OpError with Op "connect".
func (sec Security) Dial(ctx context.Context, addr, name string) (*Client, error) {
	d := wire.Dialer{TLS: sec.TLS, Timeout: handshakeTimeout}
	conn, w, err := d.Dial(ctx, addr, wire.Hello{Role: wire.RoleConsumer, ID: name, Token: sec.Token})
	if err != nil {
		return nil, &OpError{Op: "connect", Addr: addr, Err: err}
	}
	nc := conn.NetConn()
	c := &Client{addr: addr, conn: conn}
	if err := batch.CheckName("aggregator id", w.Aggregator); err != nil {
		nc.Close()
		return nil, &OpError{Op: "connect", Addr: addr, Err: err}
	}
	c.agg = w.Aggregator
	return c, nil
}

// withDeadline runs fn, which does I/O on nc, bounded by ctx and by
// requestTimeout+extra. When ctx is done first the I/O is interrupted.
func withDeadline[T any](ctx context.Context, nc net.Conn, extra time.Duration, fn func() (T, error)) (T, error) {
	dl := time.Now().Add(requestTimeout + extra)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	nc.SetDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		nc.SetDeadline(time.Unix(1, 0)) // in the past: wakes any blocked read
	})
	v, err := fn()
	if !stop() {
		// The AfterFunc ran or is running: wait, so that it cannot touch
		// the deadline of a later request.
		<-fired
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return v, err
}

// Aggregator is the id the aggregator announced in its Welcome.
func (c *Client) Aggregator() string { return c.agg }

// Addr is the address the Client dialled.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection.
func (c *Client) Close() error {
	if c.err == nil {
		c.err = errors.New("closed")
	}
	return c.conn.NetConn().Close()
}

// broken reports whether the connection is unusable.
func (c *Client) broken() bool { return c.err != nil }

// roundTrip sends one request frame and reads its answer, which must be of
// type want and carry the request id req (its first 8 bytes). The returned
// payload aliases the connection's read buffer until the next request. A
// failure is an *OpError with the request's type as Op.
func (c *Client) roundTrip(ctx context.Context, t wire.Type, payload []byte, want wire.Type, req uint64, extra time.Duration) ([]byte, error) {
	if c.err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBroken, c.addr, c.err)
	}
	p, err := withDeadline(ctx, c.conn.NetConn(), extra, func() ([]byte, error) {
		if err := c.conn.WriteFrame(t, payload); err != nil {
			return nil, err
		}
		if err := c.conn.Flush(); err != nil {
			return nil, err
		}
		rt, p, err := c.conn.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch rt {
		case want:
		case wire.TypeError:
			// The server closes after an Error frame.
			return nil, wire.DecodeError(p)
		default:
			return nil, fmt.Errorf("%w: %s in answer to %s", wire.ErrUnexpected, rt, t)
		}
		if len(p) < 8 {
			return nil, fmt.Errorf("%w: %s of %d bytes", wire.ErrMalformed, rt, len(p))
		}
		if got := (&wire.Dec{B: p[:8]}).U64(); got != req {
			return nil, fmt.Errorf("%w: %s for request %d, want %d", wire.ErrUnexpected, rt, got, req)
		}
		return p, nil
	})
	if err != nil {
		c.err = err
		return nil, &OpError{Op: t.String(), Addr: c.addr, Err: err}
	}
	return p, nil
}

func (c *Client) nextReq() uint64 {
	c.req++
	return c.req
}

// Metadata lists the partitions of topics (every topic when empty).
func (c *Client) Metadata(ctx context.Context, topics []string) ([]wire.PartitionInfo, error) {
	req := c.nextReq()
	c.buf = (&wire.Metadata{Req: req, Topics: topics}).Encode(c.buf[:0])
	p, err := c.roundTrip(ctx, wire.TypeMetadata, c.buf, wire.TypeMetadataResult, req, 0)
	if err != nil {
		return nil, err
	}
	var m wire.MetadataResult
	if err := m.Decode(p); err != nil {
		c.err = err
		return nil, fmt.Errorf("sinks: metadata from %s: %w", c.addr, err)
	}
	return m.Partitions, nil
}

// Fetch asks for stored batches of one partition from offset, at most
// about maxBytes of them, waiting up to maxWait at the end of the log. The
// result's Batches alias the connection's buffer: valid until the next
// request. An offset outside the stored range is an *OutOfRangeError; an
// unknown partition is ErrUnknownPartition.
func (c *Client) Fetch(ctx context.Context, topic string, partition int, offset int64, maxBytes int, maxWait time.Duration) (*wire.FetchResult, error) {
	if partition < 0 || maxBytes <= 0 || maxWait < 0 {
		return nil, fmt.Errorf("BUG: sinks: Fetch(partition %d, max bytes %d, max wait %s)", partition, maxBytes, maxWait)
	}
	// A server returns at least one whole batch, however small maxBytes.
	c.conn.SetMaxFrame(max(wire.DefaultMaxFrame, maxBytes+batch.MaxSize+wire.FetchResultHeaderSize))
	req := c.nextReq()
	c.buf = (&wire.Fetch{
		Req: req, Topic: topic, Partition: uint32(partition), Offset: offset,
		MaxBytes: uint32(maxBytes), MaxWaitMs: uint32(maxWait / time.Millisecond),
	}).Encode(c.buf[:0])
	p, err := c.roundTrip(ctx, wire.TypeFetch, c.buf, wire.TypeFetchResult, req, maxWait)
	if err != nil {
		return nil, err
	}
	res := &wire.FetchResult{}
	if err := res.Decode(p); err != nil {
		c.err = err
		return nil, fmt.Errorf("sinks: fetch from %s: %w", c.addr, err)
	}
	switch res.Status {
	case wire.FetchOK:
		return res, nil
	case wire.FetchOutOfRange:
		return nil, &OutOfRangeError{Aggregator: c.agg, Topic: topic, Partition: partition, Offset: offset, Start: res.Start, End: res.End}
	case wire.FetchUnknownPartition:
		return nil, fmt.Errorf("%w: %s/%s/%d", ErrUnknownPartition, c.agg, topic, partition)
	}
	return nil, fmt.Errorf("%w: fetch status %d from %s", wire.ErrMalformed, res.Status, c.addr)
}

// Committed is a sink's committed offset of one partition, and the reset
// epoch it was committed under.
type Committed struct {
	Offset int64
	Epoch  uint64
}

// Commit stores offset, the next offset the sink will read, as the sink's
// committed offset of one partition, under epoch. A commit under a stale
// epoch is ErrOffsetReset; another refusal is ErrCommitRefused.
func (c *Client) Commit(ctx context.Context, sink, topic string, partition int, offset int64, epoch uint64) error {
	req := c.nextReq()
	c.buf = (&wire.OffsetCommit{Req: req, Sink: sink, Topic: topic, Partition: uint32(partition), Offset: offset, Epoch: epoch}).Encode(c.buf[:0])
	return c.commitLike(ctx, wire.TypeOffsetCommit, req, topic, partition, offset)
}

// Reset moves the sink's committed offset of one partition to offset under
// a new epoch: an operator's replay. A running sink follows it within its
// Options.MetadataInterval.
func (c *Client) Reset(ctx context.Context, sink, topic string, partition int, offset int64) error {
	req := c.nextReq()
	c.buf = (&wire.OffsetReset{Req: req, Sink: sink, Topic: topic, Partition: uint32(partition), Offset: offset}).Encode(c.buf[:0])
	return c.commitLike(ctx, wire.TypeOffsetReset, req, topic, partition, offset)
}

func (c *Client) commitLike(ctx context.Context, t wire.Type, req uint64, topic string, partition int, offset int64) error {
	p, err := c.roundTrip(ctx, t, c.buf, wire.TypeOffsetCommitted, req, 0)
	if err != nil {
		return err
	}
	var m wire.OffsetCommitted
	if err := m.Decode(p); err != nil {
		c.err = err
		return fmt.Errorf("sinks: %s to %s: %w", t, c.addr, err)
	}
	switch m.Status {
	case wire.CommitOK:
		return nil
	case wire.CommitReset:
		return fmt.Errorf("%w by %s: %s/%d at %d: %s", ErrOffsetReset, c.agg, topic, partition, offset, m.Message)
	}
	return fmt.Errorf("%w by %s: %s/%d at %d: %s", ErrCommitRefused, c.agg, topic, partition, offset, m.Message)
}

// Committed returns the sink's committed offsets in topic, by partition;
// partitions without a commit are absent.
func (c *Client) Committed(ctx context.Context, sink, topic string) (map[int]Committed, error) {
	req := c.nextReq()
	c.buf = (&wire.OffsetFetch{Req: req, Sink: sink, Topic: topic}).Encode(c.buf[:0])
	p, err := c.roundTrip(ctx, wire.TypeOffsetFetch, c.buf, wire.TypeOffsets, req, 0)
	if err != nil {
		return nil, err
	}
	var m wire.Offsets
	if err := m.Decode(p); err != nil {
		c.err = err
		return nil, fmt.Errorf("sinks: offsets from %s: %w", c.addr, err)
	}
	out := make(map[int]Committed, len(m.Offsets))
	for _, o := range m.Offsets {
		out[int(o.Partition)] = Committed{Offset: o.Offset, Epoch: o.Epoch}
	}
	return out, nil
}
