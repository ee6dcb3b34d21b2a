// Package fakeagg is an in-memory aggregator for the sinks' tests: it
// speaks the consumer side of the wire protocol (handshake, Metadata,
// Fetch with long poll, OffsetCommit, OffsetFetch) over TCP, from batches
// built with batch.Builder and stamped with batch.Stamp. It is not a
// model of the real aggregator's storage, only of its protocol.
package fakeagg

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"logship/internal/wire"
	"logship/logstore/batch"
)

type partKey struct {
	topic string
	part  int
}

type commitKey struct {
	sink  string
	topic string
	part  int
}

type commit struct {
	off   int64
	epoch uint64
}

type partition struct {
	start   int64 // first offset still stored
	end     int64 // next offset to assign
	batches [][]byte
}

// Server is a fake aggregator. Its methods are safe for concurrent use.
type Server struct {
	id string
	ln net.Listener

	mu      sync.Mutex
	parts   map[partKey]*partition
	commits map[commitKey]commit
	// CommitHook, when set, is called for every OffsetCommit; false
	// refuses the commit (status 1) and leaves the stored offset alone.
	commitHook func(sink, topic string, part int, off int64) bool
	changed    chan struct{} // closed and replaced on every append
	conns      map[net.Conn]bool
	closed     bool
	done       chan struct{}
	wg         sync.WaitGroup
	fetches    int
	frozen     bool
	token      string // "": every consumer is accepted
}

// Start serves on addr ("127.0.0.1:0" for any port) as aggregator id.
func Start(id, addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		id: id, ln: ln,
		parts: map[partKey]*partition{}, commits: map[commitKey]commit{},
		changed: make(chan struct{}), conns: map[net.Conn]bool{}, done: make(chan struct{}),
	}
	s.wg.Go(s.accept)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ID is the aggregator id.
func (s *Server) ID() string { return s.id }

// Close stops the server, closes every connection and waits for its
// goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// AddPartition creates an empty partition.
func (s *Server) AddPartition(topic string, part int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partLocked(topic, part)
}

func (s *Server) partLocked(topic string, part int) *partition {
	k := partKey{topic, part}
	p := s.parts[k]
	if p == nil {
		p = &partition{}
		s.parts[k] = p
	}
	return p
}

// Append stores one batch holding records, built with codec c, and returns
// its base offset. Record i's time is 1e9*(base+i) ns.
func (s *Server) Append(topic string, part int, c batch.Compression, records ...string) (int64, error) {
	b, err := batch.NewBuilder(c)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.partLocked(topic, part)
	for i, r := range records {
		b.Add(int64(p.end+int64(i))*1e9, []byte(r))
	}
	raw, err := b.Build(nil, batch.Meta{Agent: "host-1", Topic: topic, Path: "/var/log/" + topic + ".log", SourceID: 7})
	if err != nil {
		return 0, err
	}
	base := p.end
	batch.Stamp(raw, base, time.Now().UnixMilli())
	p.batches = append(p.batches, raw)
	p.end += int64(len(records))
	close(s.changed)
	s.changed = make(chan struct{})
	return base, nil
}

// Truncate deletes, as retention would, the whole batches that end at or
// before offset, and returns the partition's new start.
func (s *Server) Truncate(topic string, part int, offset int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.partLocked(topic, part)
	for len(p.batches) > 0 {
		b := p.batches[0]
		if batch.BaseOffset(b)+int64(batch.Count(b)) > offset {
			break
		}
		p.batches = p.batches[1:]
		p.start = batch.BaseOffset(b) + int64(batch.Count(b))
	}
	return p.start
}

// Range returns a partition's stored range [start, end).
func (s *Server) Range(topic string, part int) (start, end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.partLocked(topic, part)
	return p.start, p.end
}

// Committed returns a sink's committed offset of a partition.
func (s *Server) Committed(sink, topic string, part int) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.commits[commitKey{sink, topic, part}]
	return c.off, ok
}

// SetCommitted stores a committed offset, as if the sink had committed it
// under the partition's current epoch.
func (s *Server) SetCommitted(sink, topic string, part int, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := commitKey{sink, topic, part}
	s.commits[k] = commit{off, s.commits[k].epoch}
}

// Reset moves a committed offset under the next epoch, as an operator's
// OffsetReset does, and returns that epoch.
func (s *Server) Reset(sink, topic string, part int, off int64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := commitKey{sink, topic, part}
	c := commit{off, s.commits[k].epoch + 1}
	s.commits[k] = c
	return c.epoch
}

// SetCommitHook sets the function that decides whether commits are
// accepted (nil: all are).
func (s *Server) SetCommitHook(f func(sink, topic string, part int, off int64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitHook = f
}

// Freeze makes fetches see no new records until Unfreeze, so that a test
// can change the log in several steps that a consumer sees as one.
func (s *Server) Freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = true
}

// Unfreeze ends Freeze.
func (s *Server) Unfreeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = false
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetToken makes the server refuse, as an aggregator with tokens does
// (wire.CodeAuth), every consumer whose Hello does not carry tok; "" (the
// default) accepts every one. It applies to handshakes from now on.
func (s *Server) SetToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = tok
}

// Fetches counts the Fetch requests served.
func (s *Server) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func (s *Server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			s.serve(wire.NewConn(nc, 0))
		})
	}
}

func (s *Server) serve(c *wire.Conn) {
	h, err := c.ServerHandshake(5 * time.Second)
	if err != nil {
		return
	}
	if h.Role != wire.RoleConsumer {
		c.WriteError(wire.CodeAuth, "fakeagg serves consumers only")
		return
	}
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	if tok != "" && h.Token != tok {
		c.WriteError(wire.CodeAuth, "fakeagg: token refused")
		return
	}
	if err := c.Accept(wire.Welcome{Version: h.Version, Aggregator: s.id, MaxFrame: wire.DefaultMaxFrame}); err != nil {
		return
	}
	for {
		t, p, err := c.ReadFrame()
		if err != nil {
			return
		}
		if err := s.handle(c, t, p); err != nil {
			c.WriteError(wire.CodeProtocol, err.Error())
			return
		}
		if err := c.Flush(); err != nil {
			return
		}
	}
}

func (s *Server) handle(c *wire.Conn, t wire.Type, p []byte) error {
	switch t {
	case wire.TypeMetadata:
		var m wire.Metadata
		if err := m.Decode(p); err != nil {
			return err
		}
		res := wire.MetadataResult{Req: m.Req, Aggregator: s.id}
		s.mu.Lock()
		for k, pt := range s.parts {
			if len(m.Topics) == 0 || slices.Contains(m.Topics, k.topic) {
				res.Partitions = append(res.Partitions, wire.PartitionInfo{Topic: k.topic, Partition: uint32(k.part), Start: pt.start, End: pt.end})
			}
		}
		s.mu.Unlock()
		return c.WriteFrame(wire.TypeMetadataResult, res.Encode(nil))
	case wire.TypeFetch:
		var m wire.Fetch
		if err := m.Decode(p); err != nil {
			return err
		}
		res, batches := s.fetch(&m)
		return c.WriteFrame(wire.TypeFetchResult, res.EncodeHeader(nil), batches)
	case wire.TypeOffsetCommit:
		var m wire.OffsetCommit
		if err := m.Decode(p); err != nil {
			return err
		}
		res := wire.OffsetCommitted{Req: m.Req}
		s.mu.Lock()
		k := commitKey{m.Sink, m.Topic, int(m.Partition)}
		switch {
		case s.commits[k].epoch != m.Epoch:
			res.Status, res.Message = wire.CommitReset, fmt.Sprintf("epoch %d, stored %d", m.Epoch, s.commits[k].epoch)
		case s.commitHook == nil || s.commitHook(m.Sink, m.Topic, int(m.Partition), m.Offset):
			s.commits[k] = commit{m.Offset, m.Epoch}
		default:
			res.Status, res.Message = wire.CommitInvalid, "refused by the test"
		}
		s.mu.Unlock()
		return c.WriteFrame(wire.TypeOffsetCommitted, res.Encode(nil))
	case wire.TypeOffsetReset:
		var m wire.OffsetReset
		if err := m.Decode(p); err != nil {
			return err
		}
		s.Reset(m.Sink, m.Topic, int(m.Partition), m.Offset)
		res := wire.OffsetCommitted{Req: m.Req}
		return c.WriteFrame(wire.TypeOffsetCommitted, res.Encode(nil))
	case wire.TypeOffsetFetch:
		var m wire.OffsetFetch
		if err := m.Decode(p); err != nil {
			return err
		}
		res := wire.Offsets{Req: m.Req}
		s.mu.Lock()
		for k, c := range s.commits {
			if k.sink == m.Sink && k.topic == m.Topic {
				res.Offsets = append(res.Offsets, wire.PartitionOffset{Partition: uint32(k.part), Offset: c.off, Epoch: c.epoch})
			}
		}
		s.mu.Unlock()
		return c.WriteFrame(wire.TypeOffsets, res.Encode(nil))
	}
	return fmt.Errorf("%w: %s", wire.ErrUnexpected, t)
}

// fetch answers a Fetch: at least one whole batch (the one holding the
// offset), then more while they fit in MaxBytes; at the end of the log it
// waits up to MaxWaitMs for an append.
func (s *Server) fetch(m *wire.Fetch) (wire.FetchResult, []byte) {
	deadline := time.NewTimer(time.Duration(m.MaxWaitMs) * time.Millisecond)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		s.fetches++
		res := wire.FetchResult{Req: m.Req}
		p := s.parts[partKey{m.Topic, int(m.Partition)}]
		if p == nil {
			s.mu.Unlock()
			res.Status = wire.FetchUnknownPartition
			return res, nil
		}
		res.Start, res.End = p.start, p.end
		if m.Offset < p.start || m.Offset > p.end {
			s.mu.Unlock()
			res.Status = wire.FetchOutOfRange
			return res, nil
		}
		var out []byte
		for _, b := range p.batches {
			if s.frozen {
				break
			}
			if batch.BaseOffset(b)+int64(batch.Count(b)) <= m.Offset {
				continue
			}
			if len(out) > 0 && len(out)+len(b) > int(m.MaxBytes) {
				break
			}
			out = append(out, b...)
		}
		changed := s.changed
		s.mu.Unlock()
		if len(out) > 0 {
			return res, out
		}
		select {
		case <-changed:
		case <-deadline.C:
			return res, nil
		case <-s.done:
			return res, nil
		}
	}
}
