package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Operator requests: the offset of a time, and an aggregator's status.
// They are consumer-role requests, answered like the others; see doc.go.

// OffsetForTime asks for the first offset of a partition whose batch was
// appended at or after a time (unix ms): where a replay "from that time"
// starts.
type OffsetForTime struct {
	Req       uint64
	Topic     string
	Partition uint32
	TimeMs    int64
}

// Encode appends the payload.
func (m *OffsetForTime) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Topic)
	e.U32(m.Partition)
	e.I64(m.TimeMs)
	return e.B
}

// Decode reads the payload.
func (m *OffsetForTime) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Topic, m.Partition, m.TimeMs = d.U64(), d.Str(), d.U32(), d.I64()
	return d.Done()
}

// OffsetTime statuses. Wire format: do not change the numbers.
const (
	TimeOK               = 0 // Offset is the answer (the partition's end when nothing is that recent)
	TimeUnknownPartition = 1 // no such topic or partition
	TimeFailed           = 2 // the lookup failed (I/O error); Message says why
)

// OffsetTime answers OffsetForTime.
type OffsetTime struct {
	Req     uint64
	Status  uint8
	Offset  int64
	Message string
}

// Encode appends the payload.
func (m *OffsetTime) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.U8(m.Status)
	e.I64(m.Offset)
	e.Str(m.Message)
	return e.B
}

// Decode reads the payload.
func (m *OffsetTime) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Status, m.Offset, m.Message = d.U64(), d.U8(), d.I64(), d.Str()
	return d.Done()
}

// StatusRequest asks an aggregator for its Status.
type StatusRequest struct {
	Req uint64
}

// Encode appends the payload.
func (m *StatusRequest) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	return e.B
}

// Decode reads the payload.
func (m *StatusRequest) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req = d.U64()
	return d.Done()
}

// StatusVersion is the version of the Status document. A field is only
// ever added; a change of meaning gets a new version.
const StatusVersion = 1

// StatusResult answers StatusRequest: u64 req, then the Status as JSON.
// Status is for operators, not the data path, so a self-describing
// document that tools can pass on (logship status --format json) is worth
// more than a compact encoding.
type StatusResult struct {
	Req    uint64
	Status Status
}

// Encode appends the payload.
func (m *StatusResult) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	j, err := json.Marshal(m.Status)
	if err != nil {
		panic("BUG: wire: marshal status: " + err.Error())
	}
	e.B = append(e.B, j...)
	return e.B
}

// Decode reads the payload.
func (m *StatusResult) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req = d.U64()
	rest := d.Rest()
	if err := d.Err(); err != nil {
		return err
	}
	if err := json.Unmarshal(rest, &m.Status); err != nil {
		return fmt.Errorf("%w: status document: %v", ErrMalformed, err)
	}
	if m.Status.Version != StatusVersion {
		return fmt.Errorf("%w: status document version %d, want %d", ErrMalformed, m.Status.Version, StatusVersion)
	}
	return nil
}

// Status is what an aggregator reports of itself: the agents connected
// now, its partitions, and every sink's position in them.
type Status struct {
	Version    int               `json:"version"`
	Aggregator string            `json:"aggregator"`
	Time       time.Time         `json:"time"`
	Agents     []AgentStatus     `json:"agents"`
	Partitions []PartitionStatus `json:"partitions"`
	Sinks      []SinkStatus      `json:"sinks"`
}

// AgentStatus is one connected agent.
type AgentStatus struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Connected   time.Time `json:"connected"`
	Topics      []string  `json:"topics"`        // topics it sent batches of on this connection
	Batches     int64     `json:"batches"`       // valid batches received on this connection
	Bytes       int64     `json:"bytes"`         // bytes of those batches, as stored (compressed)
	RawBytes    int64     `json:"raw_bytes"`     // bytes of their records, uncompressed
	BytesPerSec float64   `json:"bytes_per_sec"` // raw bytes per second over the last minute or so
	// As the agent reports them (AgentReport): its open files, their
	// total lag in bytes, and the files that lag most. -1 and none until
	// the agent's first report (agents of protocol version 1 send none).
	OpenFiles int       `json:"open_files"`
	LagBytes  int64     `json:"lag_bytes"`
	Lagging   []FileLag `json:"lagging,omitempty"`
}

// PartitionStatus is one partition of the aggregator's log.
type PartitionStatus struct {
	Topic       string `json:"topic"`
	Aggregator  string `json:"aggregator"`
	Partition   int    `json:"partition"`
	StartOffset int64  `json:"start_offset"` // first offset still stored
	EndOffset   int64  `json:"end_offset"`   // the offset the next record gets
	Bytes       int64  `json:"bytes"`
	Segments    int    `json:"segments"`
	// Append times of the first and last stored batch; absent when empty.
	FirstTime *time.Time `json:"first_time,omitempty"`
	LastTime  *time.Time `json:"last_time,omitempty"`
}

// SinkStatus is one sink's committed position in one partition.
type SinkStatus struct {
	Sink       string `json:"sink"`
	Topic      string `json:"topic"`
	Aggregator string `json:"aggregator"`
	Partition  int    `json:"partition"`
	Committed  int64  `json:"committed"` // the next offset the sink will read
	Epoch      uint64 `json:"epoch"`     // operator resets so far
	Lag        int64  `json:"lag"`       // records from committed to the end
	LagBytes   int64  `json:"lag_bytes"` // stored bytes from committed to the end
	// CommittedTime is the append time of the batch holding the committed
	// offset; absent when the sink is at the end (or the partition is gone).
	CommittedTime *time.Time `json:"committed_time,omitempty"`
	// Behind is set when retention deleted records the sink had not read.
	Behind bool `json:"behind,omitempty"`
}

// AgentReport (version 2, agent → server, not answered) tells the
// aggregator how far behind the agent is in its files, for `logship
// status`: how many files it has open, their total lag, and the files
// that lag most, as many as fit in MaxAgentReport bytes. An agent sends
// one every few heartbeats; the aggregator keeps the last.
type AgentReport struct {
	Files    uint32    // open files
	LagBytes int64     // their total lag: size minus acknowledged position
	Lagging  []FileLag // the files that lag most, most first
}

// FileLag is one file of an AgentReport.
type FileLag struct {
	Topic string `json:"topic"`
	Path  string `json:"path"`
	Size  int64  `json:"size"`  // at the agent's last look
	Acked int64  `json:"acked"` // acknowledged position
}

// MaxAgentReport bounds an AgentReport's payload: it is a control frame.
const MaxAgentReport = MaxControlFrame - 1024

// Encode appends the payload: u32 files, i64 lag bytes, u16 n, n × (str
// topic, str path, i64 size, i64 acked). It lists files from Lagging in
// order while the payload stays within MaxAgentReport bytes.
func (m *AgentReport) Encode(b []byte) []byte {
	e := Enc{B: b}
	start := len(b)
	e.U32(m.Files)
	e.I64(m.LagBytes)
	at := len(e.B)
	e.U16(0)
	n := 0
	for _, f := range m.Lagging {
		if n == 1<<16-1 || len(e.B)-start+2+len(f.Topic)+2+len(f.Path)+16 > MaxAgentReport {
			break
		}
		e.Str(f.Topic)
		e.Str(f.Path)
		e.I64(f.Size)
		e.I64(f.Acked)
		n++
	}
	e.B[at], e.B[at+1] = byte(n>>8), byte(n)
	return e.B
}

// Decode reads the payload.
func (m *AgentReport) Decode(p []byte) error {
	if len(p) > MaxAgentReport {
		return fmt.Errorf("%w: agent report of %d bytes, limit %d", ErrMalformed, len(p), MaxAgentReport)
	}
	d := Dec{B: p}
	m.Files, m.LagBytes = d.U32(), d.I64()
	n := int(d.U16())
	if n > len(p)/20 { // each entry takes at least 20 bytes
		return fmt.Errorf("%w: %d files in %d bytes", ErrMalformed, n, len(p))
	}
	m.Lagging = make([]FileLag, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Lagging = append(m.Lagging, FileLag{Topic: d.Str(), Path: d.Str(), Size: d.I64(), Acked: d.I64()})
	}
	return d.Done()
}
