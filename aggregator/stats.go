package aggregator

import (
	"sync/atomic"
	"time"
)

// rejectReason classifies connections closed by the server because of what
// the peer sent (or did not send).
type rejectReason int

const (
	rejectNone      rejectReason = -1       // closed by the server, not for what the peer sent
	rejectHandshake rejectReason = iota - 1 // bad preamble, bad or missing Hello, handshake timeout
	rejectHello                             // well-formed Hello refused: role, id
	rejectProtocol                          // bad frame after the handshake: length, type, truncation
	rejectBatch                             // bad batch: CRC, lengths, topic name
	rejectTLS                               // TLS handshake failed: bad, expired or unknown certificate, not TLS
	rejectAuth                              // missing or unknown token, a role or id the token lacks, a reset without admin, another sink's offsets
	rejectIdle                              // no frame within the idle timeout
	rejectSlow                              // a frame not complete within the read timeout (slowloris)
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{"handshake", "hello", "protocol", "batch", "tls", "auth", "idle", "slow"}

// latencyBounds are the upper bounds, in seconds, of the latency
// histograms' buckets. Never modified.
var latencyBounds = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram counts durations into latencyBounds; safe for concurrent use.
type histogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64 // the last one: above every bound
	sum     atomic.Int64                          // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBounds) && s > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram, in the shape Prometheus
// wants: Counts[i] is the number of observations <= Bounds[i].
type Histogram struct {
	Bounds []float64 // seconds
	Counts []uint64  // cumulative
	Count  uint64
	Sum    float64 // seconds
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: latencyBounds[:], Counts: make([]uint64, len(latencyBounds))}
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
		if i < len(latencyBounds) {
			out.Counts[i] = n
		}
	}
	out.Count = n
	out.Sum = time.Duration(h.sum.Load()).Seconds()
	return out
}

// stats are the server's counters. Every field is updated atomically from
// any goroutine; Stats takes a snapshot.
type stats struct {
	connections atomic.Int64
	open        atomic.Int64
	openAgents  atomic.Int64
	rejected    [numRejectReasons]atomic.Int64

	wireIn  atomic.Int64 // every byte read from peers after TLS
	wireOut atomic.Int64 // every byte written to peers

	batchesIn  atomic.Int64 // Produce frames with a valid batch
	bytesIn    atomic.Int64 // bytes of those batches
	appended   atomic.Int64
	duplicates atomic.Int64
	resyncs    atomic.Int64
	failed     atomic.Int64
	gaps       atomic.Int64 // batches appended after a gap in their source
	heartbeats atomic.Int64

	fetches       atomic.Int64
	fetchBytes    atomic.Int64
	fetchRecords  atomic.Int64
	offsetCommits atomic.Int64
	offsetResets  atomic.Int64

	appendLatency  histogram // dedup checks and append of a batch, or of the batches of a connection appended together, under the partition's lock
	durableLatency histogram // an ack's wait for its batch to be durable (the group-commit fsync)
}

func (s *stats) reject(r rejectReason) {
	if r >= 0 {
		s.rejected[r].Add(1)
	}
}

// Stats is a snapshot of the server's counters since New.
type Stats struct {
	Connections     int64            // accepted
	OpenConnections int64            // open now
	OpenAgents      int64            // agent connections open now
	Rejected        map[string]int64 // connections closed for what the peer sent, by reason: handshake, hello, protocol, batch, tls, auth, idle, slow
	WireBytesIn     int64            // bytes read from peers (frames, after TLS)
	WireBytesOut    int64            // bytes written to peers (frames, after TLS)
	BatchesIn       int64            // valid batches received
	BytesIn         int64            // bytes of those batches
	Appended        int64            // acks by status
	Duplicates      int64
	Resyncs         int64
	Failed          int64
	Gaps            int64 // batches appended although their source skipped bytes
	Heartbeats      int64 // heartbeats answered
	Fetches         int64
	FetchBytes      int64 // bytes of batches sent to consumers
	FetchRecords    int64 // records in the batches sent to consumers
	OffsetCommits   int64
	OffsetResets    int64

	AppendLatency  Histogram // dedup checks plus append of a batch, or of the batches of a connection appended together
	DurableLatency Histogram // wait for a batch to be durable before its ack (fsync = "always": the group commit)
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		Connections:     st.connections.Load(),
		OpenConnections: st.open.Load(),
		OpenAgents:      st.openAgents.Load(),
		Rejected:        make(map[string]int64, numRejectReasons),
		WireBytesIn:     st.wireIn.Load(),
		WireBytesOut:    st.wireOut.Load(),
		BatchesIn:       st.batchesIn.Load(),
		BytesIn:         st.bytesIn.Load(),
		Appended:        st.appended.Load(),
		Duplicates:      st.duplicates.Load(),
		Resyncs:         st.resyncs.Load(),
		Failed:          st.failed.Load(),
		Gaps:            st.gaps.Load(),
		Heartbeats:      st.heartbeats.Load(),
		Fetches:         st.fetches.Load(),
		FetchBytes:      st.fetchBytes.Load(),
		FetchRecords:    st.fetchRecords.Load(),
		OffsetCommits:   st.offsetCommits.Load(),
		OffsetResets:    st.offsetResets.Load(),
		AppendLatency:   st.appendLatency.snapshot(),
		DurableLatency:  st.durableLatency.snapshot(),
	}
	for i, n := range rejectNames {
		out.Rejected[n] = st.rejected[i].Load()
	}
	return out
}

// PartitionEnd is one partition's stored range.
type PartitionEnd struct {
	Topic      string
	Partition  int
	Start, End int64 // offsets: the first stored, and the next to be assigned
}

// PartitionEnds lists every partition's start and end offsets. Safe for
// concurrent use.
func (s *Server) PartitionEnds() []PartitionEnd {
	parts := s.store.Partitions()
	out := make([]PartitionEnd, 0, len(parts))
	for _, p := range parts {
		out = append(out, PartitionEnd{Topic: p.Topic(), Partition: p.ID(), Start: p.Start(), End: p.End()})
	}
	return out
}
