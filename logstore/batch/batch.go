package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire format: do not change. A new layout gets a new Magic.
const (
	// Magic is the format version written at byte 4 of every batch.
	Magic = 1

	offLength     = 0
	offMagic      = 4
	offBaseOffset = 5
	offAppendTime = 13
	offHeaderCRC  = 21
	offBodyCRC    = 25
	offBody       = 29
	offCompress   = 29
	offFlags      = 30
	offCount      = 31
	offFirstTime  = 35
	offLastTime   = 43
	offSourceID   = 51
	offRangeStart = 59
	offRangeEnd   = 67
	offStrings    = 75

	// PrefixSize is how many bytes must be read to learn a batch's size,
	// base offset, append time and to check the header CRC.
	PrefixSize = offBody
	// MinSize is the smallest well-formed batch: fixed fields, three empty
	// strings and the raw length.
	MinSize = offStrings + 3*2 + 4
	// MaxSize bounds a batch, so that a damaged length can never make a
	// reader allocate gigabytes.
	MaxSize = 64 << 20
	// MaxStringLen bounds the agent id, topic and source path.
	MaxStringLen = 4096
)

// Compression names the codec of a batch's payload.
type Compression uint8

// Codecs. Wire format: do not change the numbers.
const (
	None Compression = 0
	Zstd Compression = 1
	S2   Compression = 2
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zstd:
		return "zstd"
	case S2:
		return "s2"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression maps a config value to a codec.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none":
		return None, nil
	case "zstd", "":
		return Zstd, nil
	case "s2":
		return S2, nil
	}
	return 0, fmt.Errorf("batch: unknown compression %q (want zstd, s2 or none)", s)
}

// Errors returned by Parse and friends. Test with errors.Is.
var (
	ErrTruncated = errors.New("batch: truncated")
	ErrCorrupt   = errors.New("batch: corrupt")
	ErrChecksum  = errors.New("batch: checksum mismatch")
	ErrVersion   = errors.New("batch: unknown format version")
	ErrTooLarge  = errors.New("batch: too large")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC32C used by every logship format.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Header is a batch's decoded header: everything but the payload.
// The strings alias nothing: they are copies.
type Header struct {
	Size        int   // total bytes of the batch, length field included
	BaseOffset  int64 // set by the aggregator
	AppendTime  int64 // unix ms, set by the aggregator
	Compression Compression
	Count       int   // records
	FirstTime   int64 // unix ns
	LastTime    int64 // unix ns
	SourceID    uint64
	RangeStart  int64
	RangeEnd    int64
	Agent       string
	Topic       string
	Path        string
	RawLen      int // payload size once decompressed
	// PayloadOffset is where the payload starts within the batch.
	PayloadOffset int
}

// NextOffset is the offset just past the batch's last record.
func (h *Header) NextOffset() int64 { return h.BaseOffset + int64(h.Count) }

// Size reads a batch's total size from its first four bytes, without
// checking anything else. It returns ErrTruncated when b is shorter than 4
// and ErrTooLarge or ErrCorrupt for a length that cannot be a batch.
func Size(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, ErrTruncated
	}
	n := int64(binary.BigEndian.Uint32(b)) + 4
	if n > MaxSize {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	if n < MinSize {
		return 0, fmt.Errorf("%w: length %d below minimum %d", ErrCorrupt, n, MinSize)
	}
	return int(n), nil
}

// CheckPrefix checks the first PrefixSize bytes of a batch: length, magic
// and header CRC, and returns the batch size. Storage uses it to walk a
// segment without reading bodies.
func CheckPrefix(b []byte) (size int, err error) {
	if len(b) < PrefixSize {
		return 0, ErrTruncated
	}
	if got, want := binary.BigEndian.Uint32(b[offHeaderCRC:]), Checksum(b[:offHeaderCRC]); got != want {
		return 0, fmt.Errorf("%w: header crc %08x, want %08x", ErrChecksum, got, want)
	}
	if b[offMagic] != Magic {
		return 0, fmt.Errorf("%w: %d", ErrVersion, b[offMagic])
	}
	return Size(b)
}

// BaseOffset reads the base offset of a batch whose prefix was checked.
func BaseOffset(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }

// AppendTime reads the append time (unix ms) of a batch whose prefix was checked.
func AppendTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offAppendTime:])) }

// Count reads the record count of a whole batch. Only for checked batches.
func Count(b []byte) int { return int(binary.BigEndian.Uint32(b[offCount:])) }

// Stamp sets the base offset and append time of a batch and rewrites its
// header CRC. It touches 21 bytes and never the body. The aggregator calls it
// once, just before the append.
func Stamp(b []byte, baseOffset, appendTimeMs int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint64(b[offAppendTime:], uint64(appendTimeMs))
	binary.BigEndian.PutUint32(b[offHeaderCRC:], Checksum(b[:offHeaderCRC]))
}

// Parse checks one whole batch (b must be exactly one batch) and decodes its
// header. It verifies both CRCs and every length, so a batch that Parse
// accepts can be stored and decoded without further checks.
func Parse(b []byte) (Header, error) {
	size, err := CheckPrefix(b)
	if err != nil {
		return Header{}, err
	}
	if len(b) != size {
		if len(b) < size {
			return Header{}, fmt.Errorf("%w: have %d of %d bytes", ErrTruncated, len(b), size)
		}
		return Header{}, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b)-size)
	}
	if got, want := binary.BigEndian.Uint32(b[offBodyCRC:]), Checksum(b[offBody:]); got != want {
		return Header{}, fmt.Errorf("%w: body crc %08x, want %08x", ErrChecksum, got, want)
	}
	return parseBody(b)
}

// ParseUnchecked decodes the header of a batch whose CRCs the caller
// already trusts (for example one it just read back from its own log and
// checked with CheckPrefix and a body CRC pass). It still bounds every
// length, so it never panics on any input.
func ParseUnchecked(b []byte) (Header, error) {
	if _, err := Size(b); err != nil {
		return Header{}, err
	}
	return parseBody(b)
}

func parseBody(b []byte) (Header, error) {
	h := Header{
		Size:        len(b),
		BaseOffset:  int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
		AppendTime:  int64(binary.BigEndian.Uint64(b[offAppendTime:])),
		Compression: Compression(b[offCompress]),
		Count:       int(binary.BigEndian.Uint32(b[offCount:])),
		FirstTime:   int64(binary.BigEndian.Uint64(b[offFirstTime:])),
		LastTime:    int64(binary.BigEndian.Uint64(b[offLastTime:])),
		SourceID:    binary.BigEndian.Uint64(b[offSourceID:]),
		RangeStart:  int64(binary.BigEndian.Uint64(b[offRangeStart:])),
		RangeEnd:    int64(binary.BigEndian.Uint64(b[offRangeEnd:])),
	}
	if len(b) < MinSize {
		return Header{}, fmt.Errorf("%w: %d bytes is below the minimum %d", ErrTruncated, len(b), MinSize)
	}
	if h.Compression > S2 {
		return Header{}, fmt.Errorf("%w: unknown compression %d", ErrCorrupt, h.Compression)
	}
	if f := b[offFlags]; f != 0 {
		return Header{}, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, f)
	}
	if h.Count < 1 {
		return Header{}, fmt.Errorf("%w: no records", ErrCorrupt)
	}
	if h.RangeStart < 0 || h.RangeEnd < h.RangeStart {
		return Header{}, fmt.Errorf("%w: source range [%d, %d)", ErrCorrupt, h.RangeStart, h.RangeEnd)
	}
	p := offStrings
	var s [3]string
	for i := range s {
		if len(b)-p < 2 {
			return Header{}, fmt.Errorf("%w: strings", ErrTruncated)
		}
		n := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if n > MaxStringLen || len(b)-p < n {
			return Header{}, fmt.Errorf("%w: string of %d bytes", ErrCorrupt, n)
		}
		s[i] = string(b[p : p+n])
		p += n
	}
	h.Agent, h.Topic, h.Path = s[0], s[1], s[2]
	if len(b)-p < 4 {
		return Header{}, fmt.Errorf("%w: raw length", ErrTruncated)
	}
	raw := binary.BigEndian.Uint32(b[p:])
	p += 4
	if raw > MaxSize {
		return Header{}, fmt.Errorf("%w: raw length %d", ErrTooLarge, raw)
	}
	h.RawLen = int(raw)
	h.PayloadOffset = p
	if h.Compression == None && len(b)-p != h.RawLen {
		return Header{}, fmt.Errorf("%w: uncompressed payload of %d bytes, header says %d", ErrCorrupt, len(b)-p, h.RawLen)
	}
	return h, nil
}
