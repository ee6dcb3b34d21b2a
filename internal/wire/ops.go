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
