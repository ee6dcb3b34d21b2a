package aggregator

import "sync/atomic"

// rejectReason classifies connections closed by the server because of what
// the peer sent.
type rejectReason int

const (
	rejectNone      rejectReason = -1       // closed by the server, not for what the peer sent
	rejectHandshake rejectReason = iota - 1 // bad preamble, bad or missing Hello, handshake timeout
	rejectHello                             // well-formed Hello refused: role, id
	rejectProtocol                          // bad frame after the handshake: length, type, truncation
	rejectBatch                             // bad batch: CRC, lengths, topic name
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{"handshake", "hello", "protocol", "batch"}

// stats are the server's counters. Every field is updated atomically from
// any goroutine; Stats takes a snapshot. A later change exports them as
// Prometheus metrics.
type stats struct {
	connections atomic.Int64
	open        atomic.Int64
	rejected    [numRejectReasons]atomic.Int64

	batchesIn  atomic.Int64 // Produce frames with a valid batch
	bytesIn    atomic.Int64 // bytes of those batches
	appended   atomic.Int64
	duplicates atomic.Int64
	resyncs    atomic.Int64
	failed     atomic.Int64
	gaps       atomic.Int64 // batches appended after a gap in their source

	fetches       atomic.Int64
	fetchBytes    atomic.Int64
	offsetCommits atomic.Int64
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
	Rejected        map[string]int64 // connections closed for what the peer sent, by reason: handshake, hello, protocol, batch
	BatchesIn       int64            // valid batches received
	BytesIn         int64            // bytes of those batches
	Appended        int64            // acks by status
	Duplicates      int64
	Resyncs         int64
	Failed          int64
	Gaps            int64 // batches appended although their source skipped bytes
	Fetches         int64
	FetchBytes      int64
	OffsetCommits   int64
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		Connections:     st.connections.Load(),
		OpenConnections: st.open.Load(),
		Rejected:        make(map[string]int64, numRejectReasons),
		BatchesIn:       st.batchesIn.Load(),
		BytesIn:         st.bytesIn.Load(),
		Appended:        st.appended.Load(),
		Duplicates:      st.duplicates.Load(),
		Resyncs:         st.resyncs.Load(),
		Failed:          st.failed.Load(),
		Gaps:            st.gaps.Load(),
		Fetches:         st.fetches.Load(),
		FetchBytes:      st.fetchBytes.Load(),
		OffsetCommits:   st.offsetCommits.Load(),
	}
	for i, n := range rejectNames {
		out.Rejected[n] = st.rejected[i].Load()
	}
	return out
}
