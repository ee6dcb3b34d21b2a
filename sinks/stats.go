package sinks

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Stats collects what a Run does, for metrics: counters for the whole run
// and the position of every partition it consumes. Pass one in
// Options.Stats and read it with Snapshot while Run goes on. Safe for
// concurrent use.
type Stats struct {
	records, bytes, fetches, commits, commitErrors, resets, gaps, sinkErrors atomic.Int64

	mu    sync.Mutex
	parts map[partKey]*PartitionStats
	aggs  map[string]aggState // aggregator address → what its last attempt found
}

// aggState is what the last attempt to reach an aggregator found.
type aggState uint8

const (
	aggDown    aggState = iota // not reached yet, or the last attempt failed
	aggUp                      // the last metadata request worked
	aggRefused                 // the last dial was refused for the sink's credentials
)

// PartitionStats is the runtime's view of one partition.
type PartitionStats struct {
	Aggregator string
	Topic      string
	Partition  int
	Next       int64  // the next offset to fetch (-1 before the first)
	Committed  int64  // the offset committed at the aggregator (-1 none)
	End        int64  // the partition's end at the last fetch (-1 unknown)
	Epoch      uint64 // the reset epoch consumed under
}

// Lag is the records between Next and End, or -1 when either is unknown.
func (p PartitionStats) Lag() int64 {
	if p.Next < 0 || p.End < 0 {
		return -1
	}
	return max(p.End-p.Next, 0)
}

// StatsSnapshot is a copy of Stats at one moment.
type StatsSnapshot struct {
	Records      int64 // records delivered to the sink
	Bytes        int64 // bytes of their data
	Fetches      int64
	Commits      int64 // offset commits stored
	CommitErrors int64 // commits refused or failed
	Resets       int64 // operator resets followed
	Gaps         int64 // records found missing upstream
	SinkErrors   int64 // writer errors (Open, Write, Tick, Close): the writer is reopened
	Partitions   []PartitionStats
}

// NewStats returns empty Stats.
func NewStats() *Stats {
	return &Stats{parts: make(map[partKey]*PartitionStats), aggs: make(map[string]aggState)}
}

// Unreachable returns the aggregator addresses of addrs that were not
// reached yet, or whose last attempt to list partitions failed other than
// by a refusal of the sink's credentials (those are Refused's). A sink
// worker is ready when neither has any.
func (s *Stats) Unreachable(addrs []string) []string { return s.in(addrs, aggDown) }

// Refused returns the aggregator addresses of addrs that refused the
// sink's credentials at the last attempt (a wrong token, or one that may
// not connect as this sink): a configuration error, which retrying does
// not heal.
func (s *Stats) Refused(addrs []string) []string { return s.in(addrs, aggRefused) }

func (s *Stats) in(addrs []string, st aggState) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range addrs {
		if s.aggs[a] == st {
			out = append(out, a)
		}
	}
	return out
}

// setAgg records what the last attempt to reach an aggregator found.
func (s *Stats) setAgg(addr string, st aggState) {
	s.mu.Lock()
	s.aggs[addr] = st
	s.mu.Unlock()
}

// Snapshot returns the counters and the partitions, sorted by aggregator,
// topic and partition.
func (s *Stats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{
		Records: s.records.Load(), Bytes: s.bytes.Load(), Fetches: s.fetches.Load(), Commits: s.commits.Load(),
		CommitErrors: s.commitErrors.Load(), Resets: s.resets.Load(), Gaps: s.gaps.Load(), SinkErrors: s.sinkErrors.Load(),
	}
	s.mu.Lock()
	for _, p := range s.parts {
		out.Partitions = append(out.Partitions, *p)
	}
	s.mu.Unlock()
	slices.SortFunc(out.Partitions, func(a, b PartitionStats) int {
		return cmp.Or(strings.Compare(a.Aggregator, b.Aggregator), strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// update sets the position of a partition.
func (s *Stats) update(k partKey, f func(p *PartitionStats)) {
	s.mu.Lock()
	p := s.parts[k]
	if p == nil {
		p = &PartitionStats{Aggregator: k.agg, Topic: k.topic, Partition: k.part, Next: -1, Committed: -1, End: -1}
		s.parts[k] = p
	}
	f(p)
	s.mu.Unlock()
}
