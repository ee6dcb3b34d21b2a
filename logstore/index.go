package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"logship/logstore/batch"
)

// indexEntry maps a batch's offset, relative to its segment's base, to its
// byte position in the segment. See doc.go, "Index file".
type indexEntry struct {
	rel uint32
	pos uint32
}

// errIndex is wrapped by every reason an index file is refused.
var errIndex = errors.New("bad index")

// appendIndexEntry appends the 12-byte encoding of e to dst.
func appendIndexEntry(dst []byte, e indexEntry) []byte {
	var b [indexEntrySize]byte
	binary.BigEndian.PutUint32(b[entryOffRel:], e.rel)
	binary.BigEndian.PutUint32(b[entryOffPos:], e.pos)
	binary.BigEndian.PutUint32(b[entryOffCRC:], batch.Checksum(b[:entryOffCRC]))
	return append(dst, b[:]...)
}

// decodeIndexEntry decodes one entry, checking its CRC. It never panics:
// a short b is an error.
func decodeIndexEntry(b []byte) (indexEntry, error) {
	if len(b) < indexEntrySize {
		return indexEntry{}, fmt.Errorf("%w: entry of %d bytes", errIndex, len(b))
	}
	if got, want := binary.BigEndian.Uint32(b[entryOffCRC:]), batch.Checksum(b[:entryOffCRC]); got != want {
		return indexEntry{}, fmt.Errorf("%w: entry crc %08x, want %08x", errIndex, got, want)
	}
	return indexEntry{
		rel: binary.BigEndian.Uint32(b[entryOffRel:]),
		pos: binary.BigEndian.Uint32(b[entryOffPos:]),
	}, nil
}

// encodeIndex returns the whole index file for a segment.
func encodeIndex(base int64, entries []indexEntry) []byte {
	b := make([]byte, 0, fileHeaderSize+len(entries)*indexEntrySize)
	b = append(b, encodeFileHeader(indexMagic, indexVersion, base)...)
	for _, e := range entries {
		b = appendIndexEntry(b, e)
	}
	return b
}

// decodeIndex checks a whole index file for the segment starting at base
// that is segSize bytes long, and returns its entries. Every entry must
// check, and entries must increase strictly and point inside the segment,
// past its header. It never panics.
func decodeIndex(data []byte, base, segSize int64) ([]indexEntry, error) {
	if err := checkFileHeader(data, indexMagic, indexVersion, base); err != nil {
		return nil, fmt.Errorf("%w: %w", errIndex, err)
	}
	body := data[fileHeaderSize:]
	if len(body)%indexEntrySize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of entries is not a multiple of %d", errIndex, len(body), indexEntrySize)
	}
	entries := make([]indexEntry, 0, len(body)/indexEntrySize)
	prev := indexEntry{rel: 0, pos: fileHeaderSize} // the implicit first batch
	for i := 0; i < len(body); i += indexEntrySize {
		e, err := decodeIndexEntry(body[i:])
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i/indexEntrySize, err)
		}
		if e.rel <= prev.rel || e.pos <= prev.pos || int64(e.pos)+batch.PrefixSize > segSize {
			return nil, fmt.Errorf("%w: entry %d (%d at %d) after (%d at %d) in a segment of %d bytes",
				errIndex, i/indexEntrySize, e.rel, e.pos, prev.rel, prev.pos, segSize)
		}
		entries = append(entries, e)
		prev = e
	}
	return entries, nil
}
