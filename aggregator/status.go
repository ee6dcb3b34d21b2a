package aggregator

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"logship/internal/wire"
	"logship/logstore"
)

// What `logship status` and `logship offsets` ask of an aggregator: the
// connected agents, the partitions, the sinks' positions, and the offset
// of a time.

// rateWindow is the span over which an agent's bytes per second are
// measured; rateSample how often the reader takes a sample.
const (
	rateWindow = time.Minute
	rateSample = 10 * time.Second
)

// agentRegistry holds the agent connections open now. Safe for concurrent
// use.
type agentRegistry struct {
	mu    sync.Mutex
	conns map[*agentEntry]struct{}
}

// agentEntry is one agent connection as status reports it. The counters
// are written by the connection's reader and read by status requests.
type agentEntry struct {
	id, addr  string
	connected time.Time

	batches, bytes, raw atomic.Int64

	mu      sync.Mutex        // guards topics, samples and files
	files   *wire.AgentReport // the agent's last report of its files, nil before one
	topics  map[string]struct{}
	samples []ratePoint // (time, raw bytes so far), oldest first, within rateWindow
	lastAt  time.Time   // time of the newest sample
}

type ratePoint struct {
	at  time.Time
	raw int64
}

func newAgentRegistry() *agentRegistry {
	return &agentRegistry{conns: make(map[*agentEntry]struct{})}
}

// add registers a connection of agent id from addr.
func (r *agentRegistry) add(id, addr string, now time.Time) *agentEntry {
	e := &agentEntry{id: id, addr: addr, connected: now, topics: make(map[string]struct{}),
		samples: []ratePoint{{at: now}}, lastAt: now}
	r.mu.Lock()
	r.conns[e] = struct{}{}
	r.mu.Unlock()
	return e
}

func (r *agentRegistry) remove(e *agentEntry) {
	r.mu.Lock()
	delete(r.conns, e)
	r.mu.Unlock()
}

// batch counts one valid batch. Called by the connection's reader only.
func (e *agentEntry) batch(topic string, size, raw int, now time.Time) {
	e.batches.Add(1)
	e.bytes.Add(int64(size))
	total := e.raw.Add(int64(raw))
	e.mu.Lock()
	if _, ok := e.topics[topic]; !ok {
		e.topics[topic] = struct{}{}
	}
	if now.Sub(e.lastAt) >= rateSample {
		e.samples = append(e.samples, ratePoint{at: now, raw: total})
		e.lastAt = now
		// Keep one sample at least rateWindow old, if any, as the base.
		for len(e.samples) > 2 && now.Sub(e.samples[1].at) >= rateWindow {
			e.samples = e.samples[1:]
		}
	}
	e.mu.Unlock()
}

// report keeps the agent's last report of its files. Called by the
// connection's reader only.
func (e *agentEntry) report(r *wire.AgentReport) {
	e.mu.Lock()
	e.files = r
	e.mu.Unlock()
}

func (e *agentEntry) status(now time.Time) wire.AgentStatus {
	raw := e.raw.Load()
	e.mu.Lock()
	topics := slices.Sorted(maps.Keys(e.topics))
	base := e.samples[0]
	files := e.files
	e.mu.Unlock()
	st := wire.AgentStatus{
		ID: e.id, Address: e.addr, Connected: e.connected, Topics: topics,
		Batches: e.batches.Load(), Bytes: e.bytes.Load(), RawBytes: raw,
		OpenFiles: -1, LagBytes: -1,
	}
	if files != nil {
		st.OpenFiles, st.LagBytes, st.Lagging = int(files.Files), files.LagBytes, files.Lagging
	}
	if d := now.Sub(base.at).Seconds(); d > 0 {
		st.BytesPerSec = float64(raw-base.raw) / d
	}
	return st
}

func (r *agentRegistry) list(now time.Time) []wire.AgentStatus {
	r.mu.Lock()
	entries := slices.Collect(maps.Keys(r.conns))
	r.mu.Unlock()
	out := make([]wire.AgentStatus, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.status(now))
	}
	slices.SortFunc(out, func(a, b wire.AgentStatus) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), a.Connected.Compare(b.Connected), strings.Compare(a.Address, b.Address))
	})
	return out
}

// Status returns what the server reports of itself to `logship status`.
// Safe for concurrent use.
func (s *Server) Status() wire.Status {
	now := time.Now()
	st := wire.Status{Version: wire.StatusVersion, Aggregator: s.opts.ID, Time: now.UTC(),
		Agents: s.agents.list(now), Partitions: []wire.PartitionStatus{}, Sinks: []wire.SinkStatus{}}
	for _, p := range s.store.Partitions() {
		info := p.Info()
		ps := wire.PartitionStatus{Topic: info.Topic, Aggregator: s.opts.ID, Partition: info.Partition,
			StartOffset: info.Start, EndOffset: info.End, Bytes: info.Bytes, Segments: info.Segments,
			FirstTime: timePtr(info.FirstAppendTime), LastTime: timePtr(info.LastAppendTime)}
		st.Partitions = append(st.Partitions, ps)
	}
	slices.SortFunc(st.Partitions, func(a, b wire.PartitionStatus) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	for _, c := range s.offsets.all() {
		ss := wire.SinkStatus{Sink: c.sink, Topic: c.topic, Aggregator: s.opts.ID, Partition: int(c.partition),
			Committed: c.Offset, Epoch: c.Epoch}
		if p := s.store.Lookup(c.topic, int(c.partition)); p != nil {
			lag, err := p.Lag(c.Offset)
			if err != nil {
				s.log.Warn("status: lag of a sink", "sink", c.sink, "topic", c.topic, "partition", c.partition, "err", err)
			}
			ss.Lag, ss.LagBytes, ss.CommittedTime = lag.Records, lag.Bytes, timePtr(lag.AppendTime)
			ss.Behind = c.Offset < p.Start()
		}
		st.Sinks = append(st.Sinks, ss)
	}
	return st
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// status answers a StatusRequest. A token limited to some ids (g.limited)
// sees the partitions and its own sink's offsets only: the other sinks'
// offsets and the agents (their hosts and files) are for tokens that may
// speak for the whole fleet.
func (s *Server) status(c *wire.Conn, p []byte, g grant) error {
	var m wire.StatusRequest
	if err := m.Decode(p); err != nil {
		return protocolErr("status: %v", err)
	}
	st := s.Status()
	if g.limited {
		st.Agents = []wire.AgentStatus{}
		st.Sinks = slices.DeleteFunc(st.Sinks, func(ss wire.SinkStatus) bool { return ss.Sink != g.id })
	}
	res := wire.StatusResult{Req: m.Req, Status: st}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeStatusResult, res.Encode(nil))
}

// offsetForTime answers an OffsetForTime from the partition's time index.
func (s *Server) offsetForTime(c *wire.Conn, p []byte, log *slog.Logger) error {
	var m wire.OffsetForTime
	if err := m.Decode(p); err != nil {
		return protocolErr("offset for time: %v", err)
	}
	res := wire.OffsetTime{Req: m.Req, Status: wire.TimeOK}
	part := s.store.Lookup(m.Topic, int(m.Partition))
	if part == nil {
		res.Status, res.Message = wire.TimeUnknownPartition, fmt.Sprintf("no partition %s/%d", m.Topic, m.Partition)
	} else if off, err := part.OffsetForTime(time.UnixMilli(m.TimeMs)); err != nil {
		res.Status, res.Message = wire.TimeFailed, err.Error()
		if !errors.Is(err, logstore.ErrClosed) {
			log.Error("offset for time failed", "topic", m.Topic, "partition", m.Partition, "err", err)
		}
	} else {
		res.Offset = off
	}
	c.NetConn().SetWriteDeadline(s.writeDeadline())
	return c.WriteFrame(wire.TypeOffsetTime, res.Encode(nil))
}
