package wire

import (
	"encoding/binary"
	"fmt"
)

// Enc appends payload fields to B.
type Enc struct{ B []byte }

// U8 appends a byte.
func (e *Enc) U8(v uint8) { e.B = append(e.B, v) }

// U16 appends a big-endian uint16.
func (e *Enc) U16(v uint16) { e.B = binary.BigEndian.AppendUint16(e.B, v) }

// U32 appends a big-endian uint32.
func (e *Enc) U32(v uint32) { e.B = binary.BigEndian.AppendUint32(e.B, v) }

// U64 appends a big-endian uint64.
func (e *Enc) U64(v uint64) { e.B = binary.BigEndian.AppendUint64(e.B, v) }

// I64 appends a big-endian int64.
func (e *Enc) I64(v int64) { e.U64(uint64(v)) }

// Str appends a u16 length and the bytes; longer strings are cut at 65535
// bytes (every string of the protocol is validated far below that).
func (e *Enc) Str(s string) {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	e.U16(uint16(len(s)))
	e.B = append(e.B, s...)
}

// Dec reads payload fields from B. The first error sticks: later reads
// return zero values, and Err or Done reports it, so decoders read every
// field and check once.
type Dec struct {
	B   []byte
	err error
}

func (d *Dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.B) < n {
		d.err = errShortPayload
		d.B = nil
		return nil
	}
	b := d.B[:n]
	d.B = d.B[n:]
	return b
}

// U8 reads a byte.
func (d *Dec) U8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a uint16.
func (d *Dec) U16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// U32 reads a uint32.
func (d *Dec) U32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// U64 reads a uint64.
func (d *Dec) U64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// I64 reads an int64.
func (d *Dec) I64() int64 { return int64(d.U64()) }

// Str reads a string.
func (d *Dec) Str() string {
	n := int(d.U16())
	if b := d.take(n); b != nil {
		return string(b)
	}
	return ""
}

// Rest returns the unread bytes (aliasing the payload).
func (d *Dec) Rest() []byte {
	b := d.B
	d.B = nil
	return b
}

// Err is the first error met.
func (d *Dec) Err() error { return d.err }

// Done reports the first error, or ErrMalformed if bytes are left unread.
func (d *Dec) Done() error {
	if d.err != nil {
		return d.err
	}
	if len(d.B) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.B))
	}
	return nil
}
