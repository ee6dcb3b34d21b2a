package wire

import "fmt"

// Hello is the client's first frame.
type Hello struct {
	Version uint8
	Role    Role
	ID      string // agent id or sink name; "" allowed for consumers such as logship cat
	Token   string
}

// Encode appends the payload.
func (m *Hello) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U8(m.Version)
	e.U8(uint8(m.Role))
	e.Str(m.ID)
	e.Str(m.Token)
	return e.B
}

// Decode reads the payload.
func (m *Hello) Decode(p []byte) error {
	d := Dec{B: p}
	m.Version, m.Role, m.ID, m.Token = d.U8(), Role(d.U8()), d.Str(), d.Str()
	return d.Done()
}

// Welcome is the server's answer to Hello.
type Welcome struct {
	Version    uint8
	Aggregator string
	MaxFrame   uint32
}

// Encode appends the payload.
func (m *Welcome) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U8(m.Version)
	e.Str(m.Aggregator)
	e.U32(m.MaxFrame)
	return e.B
}

// Decode reads the payload.
func (m *Welcome) Decode(p []byte) error {
	d := Dec{B: p}
	m.Version, m.Aggregator, m.MaxFrame = d.U8(), d.Str(), d.U32()
	return d.Done()
}

// ProduceHeaderSize is the size of a Produce payload before its batch.
const ProduceHeaderSize = 8

// EncodeProduceHeader returns the bytes that precede the batch in a
// Produce frame: send them as WriteFrame(TypeProduce, hdr, batch).
func EncodeProduceHeader(dst []byte, seq uint64) []byte {
	e := Enc{B: dst}
	e.U64(seq)
	return e.B
}

// DecodeProduce splits a Produce payload into seq and batch (aliasing p).
func DecodeProduce(p []byte) (seq uint64, b []byte, err error) {
	d := Dec{B: p}
	seq = d.U64()
	if err := d.Err(); err != nil {
		return 0, nil, err
	}
	return seq, d.Rest(), nil
}

// AckStatus is the outcome of a Produce.
type AckStatus uint8

// Ack statuses. Wire format: do not change the numbers.
const (
	AckAppended  AckStatus = 0
	AckDuplicate AckStatus = 1
	AckResync    AckStatus = 2
	AckFailed    AckStatus = 3
)

func (s AckStatus) String() string {
	switch s {
	case AckAppended:
		return "appended"
	case AckDuplicate:
		return "duplicate"
	case AckResync:
		return "resync"
	case AckFailed:
		return "failed"
	}
	return fmt.Sprintf("ack status %d", uint8(s))
}

// ProduceAck answers one Produce.
type ProduceAck struct {
	Seq        uint64
	Status     AckStatus
	StoredEnd  int64 // where the source's stored data ends
	Partition  uint32
	BaseOffset int64
	Message    string
}

// Encode appends the payload.
func (m *ProduceAck) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Seq)
	e.U8(uint8(m.Status))
	e.I64(m.StoredEnd)
	e.U32(m.Partition)
	e.I64(m.BaseOffset)
	e.Str(m.Message)
	return e.B
}

// Decode reads the payload.
func (m *ProduceAck) Decode(p []byte) error {
	d := Dec{B: p}
	m.Seq, m.Status, m.StoredEnd, m.Partition, m.BaseOffset, m.Message =
		d.U64(), AckStatus(d.U8()), d.I64(), d.U32(), d.I64(), d.Str()
	if err := d.Done(); err != nil {
		return err
	}
	if m.Status > AckFailed {
		return fmt.Errorf("%w: %s", ErrMalformed, m.Status)
	}
	return nil
}

// Fetch asks for stored batches of one partition from an offset.
type Fetch struct {
	Req       uint64
	Topic     string
	Partition uint32
	Offset    int64
	MaxBytes  uint32
	MaxWaitMs uint32 // long poll: how long to wait at the end of the log
}

// Encode appends the payload.
func (m *Fetch) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Topic)
	e.U32(m.Partition)
	e.I64(m.Offset)
	e.U32(m.MaxBytes)
	e.U32(m.MaxWaitMs)
	return e.B
}

// Decode reads the payload.
func (m *Fetch) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Topic, m.Partition, m.Offset, m.MaxBytes, m.MaxWaitMs =
		d.U64(), d.Str(), d.U32(), d.I64(), d.U32(), d.U32()
	return d.Done()
}

// FetchStatus is the outcome of a Fetch.
type FetchStatus uint8

// Fetch statuses. Wire format: do not change the numbers.
const (
	FetchOK               FetchStatus = 0
	FetchOutOfRange       FetchStatus = 1 // offset below start or above end: Start and End say where the log is
	FetchUnknownPartition FetchStatus = 2
)

func (s FetchStatus) String() string {
	switch s {
	case FetchOK:
		return "ok"
	case FetchOutOfRange:
		return "offset out of range"
	case FetchUnknownPartition:
		return "unknown topic or partition"
	}
	return fmt.Sprintf("fetch status %d", uint8(s))
}

// FetchResult answers a Fetch; the batches follow the header in the frame.
type FetchResult struct {
	Req     uint64
	Status  FetchStatus
	Start   int64
	End     int64
	Batches []byte // aliases the frame when decoded
}

// FetchResultHeaderSize is the size of a FetchResult payload before its batches.
const FetchResultHeaderSize = 8 + 1 + 8 + 8

// EncodeHeader appends the payload without the batches: send it as
// WriteFrame(TypeFetchResult, hdr, batches).
func (m *FetchResult) EncodeHeader(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.U8(uint8(m.Status))
	e.I64(m.Start)
	e.I64(m.End)
	return e.B
}

// Decode reads the payload; Batches aliases p.
func (m *FetchResult) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Status, m.Start, m.End = d.U64(), FetchStatus(d.U8()), d.I64(), d.I64()
	if err := d.Err(); err != nil {
		return err
	}
	m.Batches = d.Rest()
	return nil
}

// Metadata asks which partitions exist.
type Metadata struct {
	Req    uint64
	Topics []string // empty: all
}

// Encode appends the payload.
func (m *Metadata) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.U16(uint16(len(m.Topics)))
	for _, t := range m.Topics {
		e.Str(t)
	}
	return e.B
}

// Decode reads the payload.
func (m *Metadata) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req = d.U64()
	n := int(d.U16())
	m.Topics = m.Topics[:0]
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Topics = append(m.Topics, d.Str())
	}
	return d.Done()
}

// PartitionInfo describes one partition of an aggregator.
type PartitionInfo struct {
	Topic     string
	Partition uint32
	Start     int64
	End       int64
}

// MetadataResult answers Metadata.
type MetadataResult struct {
	Req        uint64
	Aggregator string
	Partitions []PartitionInfo
}

// Encode appends the payload.
func (m *MetadataResult) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Aggregator)
	e.U32(uint32(len(m.Partitions)))
	for _, p := range m.Partitions {
		e.Str(p.Topic)
		e.U32(p.Partition)
		e.I64(p.Start)
		e.I64(p.End)
	}
	return e.B
}

// Decode reads the payload.
func (m *MetadataResult) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Aggregator = d.U64(), d.Str()
	n := int(d.U32())
	if n > len(p)/22 { // each entry takes at least 22 bytes
		return fmt.Errorf("%w: %d partitions in %d bytes", ErrMalformed, n, len(p))
	}
	m.Partitions = make([]PartitionInfo, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Partitions = append(m.Partitions, PartitionInfo{Topic: d.Str(), Partition: d.U32(), Start: d.I64(), End: d.I64()})
	}
	return d.Done()
}

// OffsetCommit stores a sink's next offset for one partition. Epoch is
// the reset epoch the sink consumes under (see Offsets): a commit whose
// epoch is not the stored one gets CommitReset and changes nothing, so a
// sink that has not seen an operator's reset yet cannot undo it.
type OffsetCommit struct {
	Req       uint64
	Sink      string
	Topic     string
	Partition uint32
	Offset    int64 // the next offset the sink will read
	Epoch     uint64
}

// Encode appends the payload.
func (m *OffsetCommit) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Sink)
	e.Str(m.Topic)
	e.U32(m.Partition)
	e.I64(m.Offset)
	e.U64(m.Epoch)
	return e.B
}

// Decode reads the payload.
func (m *OffsetCommit) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Sink, m.Topic, m.Partition, m.Offset, m.Epoch = d.U64(), d.Str(), d.Str(), d.U32(), d.I64(), d.U64()
	return d.Done()
}

// OffsetReset is an operator's move of a sink's offset in one partition
// (logship offsets reset --execute). The server stores Offset with the
// partition's epoch plus one and answers OffsetCommitted; a running sink
// sees the new epoch in Offsets and starts again from Offset.
type OffsetReset struct {
	Req       uint64
	Sink      string
	Topic     string
	Partition uint32
	Offset    int64
}

// Encode appends the payload.
func (m *OffsetReset) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Sink)
	e.Str(m.Topic)
	e.U32(m.Partition)
	e.I64(m.Offset)
	return e.B
}

// Decode reads the payload.
func (m *OffsetReset) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Sink, m.Topic, m.Partition, m.Offset = d.U64(), d.Str(), d.Str(), d.U32(), d.I64()
	return d.Done()
}

// OffsetCommitted statuses. Wire format: do not change the numbers.
const (
	CommitOK      = 0 // stored durably
	CommitInvalid = 1 // refused for good: bad sink or topic name, negative offset
	CommitFailed  = 2 // could not be stored now (I/O error); retrying may work
	CommitReset   = 3 // the commit's epoch is not the stored one: an operator reset the offset
)

// OffsetCommitted answers OffsetCommit. Status is one of CommitOK,
// CommitInvalid and CommitFailed; Message says why when it is not CommitOK.
type OffsetCommitted struct {
	Req     uint64
	Status  uint8
	Message string
}

// Encode appends the payload.
func (m *OffsetCommitted) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.U8(m.Status)
	e.Str(m.Message)
	return e.B
}

// Decode reads the payload.
func (m *OffsetCommitted) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Status, m.Message = d.U64(), d.U8(), d.Str()
	return d.Done()
}

// OffsetFetch asks for a sink's committed offsets in one topic.
type OffsetFetch struct {
	Req   uint64
	Sink  string
	Topic string
}

// Encode appends the payload.
func (m *OffsetFetch) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.Str(m.Sink)
	e.Str(m.Topic)
	return e.B
}

// Decode reads the payload.
func (m *OffsetFetch) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req, m.Sink, m.Topic = d.U64(), d.Str(), d.Str()
	return d.Done()
}

// PartitionOffset is one committed offset. Epoch counts the operator's
// resets of the partition's offset for the sink: 0 until the first one.
type PartitionOffset struct {
	Partition uint32
	Offset    int64
	Epoch     uint64
}

// Offsets answers OffsetFetch with the partitions that have a commit.
type Offsets struct {
	Req     uint64
	Offsets []PartitionOffset
}

// Encode appends the payload.
func (m *Offsets) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Req)
	e.U32(uint32(len(m.Offsets)))
	for _, o := range m.Offsets {
		e.U32(o.Partition)
		e.I64(o.Offset)
		e.U64(o.Epoch)
	}
	return e.B
}

// Decode reads the payload.
func (m *Offsets) Decode(p []byte) error {
	d := Dec{B: p}
	m.Req = d.U64()
	n := int(d.U32())
	if n > len(p)/20 {
		return fmt.Errorf("%w: %d offsets in %d bytes", ErrMalformed, n, len(p))
	}
	m.Offsets = make([]PartitionOffset, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.Offsets = append(m.Offsets, PartitionOffset{Partition: d.U32(), Offset: d.I64(), Epoch: d.U64()})
	}
	return d.Done()
}

// Heartbeat (version 2) keeps a quiet connection alive and proves the
// peer is still there: a client sends one when it has sent nothing for a
// while, and the server answers each with a Heartbeat carrying the same
// Nonce, in order with the answers to the frames before it.
type Heartbeat struct {
	Nonce uint64
}

// Encode appends the payload.
func (m *Heartbeat) Encode(b []byte) []byte {
	e := Enc{B: b}
	e.U64(m.Nonce)
	return e.B
}

// Decode reads the payload.
func (m *Heartbeat) Decode(p []byte) error {
	d := Dec{B: p}
	m.Nonce = d.U64()
	return d.Done()
}
