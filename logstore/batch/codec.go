package batch

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Meta is what a batch says about where its records come from.
type Meta struct {
	Agent      string
	Topic      string
	Path       string
	SourceID   uint64
	RangeStart int64
	RangeEnd   int64
}

// Builder collects records of one source and encodes them as a batch.
// A Builder is reused batch after batch; it is not safe for concurrent use.
// Adding a record costs two varints and a copy: no allocation once the
// buffer has grown. Build compresses on the calling goroutine; Take hands
// the records to another goroutine's Compressor instead.
type Builder struct {
	c     *Compressor
	raw   []byte
	count int
	first int64
	last  int64
}

// NewBuilder returns a Builder that compresses with c.
func NewBuilder(c Compression) (*Builder, error) {
	comp, err := NewCompressor(c)
	if err != nil {
		return nil, err
	}
	return &Builder{c: comp}, nil
}

// Compressor encodes Records as batches: the compressing half of a Builder,
// for a goroutine of its own. It is not safe for concurrent use; use one
// per goroutine.
type Compressor struct {
	comp Compression
	enc  *zstd.Encoder
}

// NewCompressor returns a Compressor that compresses with c.
//
// zstd runs at its fastest level without the frame's own checksum: the
// batch's body CRC32C already covers the compressed payload, and the
// records' varints and the raw length catch a decoder that goes wrong.
func NewCompressor(c Compression) (*Compressor, error) {
	return NewCompressorSized(c, 0)
}

// NewCompressorSized is NewCompressor for batches of about batchBytes raw
// bytes (0: any size). Every batch is a frame of its own, so zstd's window
// need not reach further back than the batch: the window is the next power
// of two at or above batchBytes (at most zstd's default, 8 MiB), and the
// encoder's history, allocated once and kept, is about the window instead
// of 16 MiB. A batch longer than the window (a long line) still
// compresses, only without matches further back than the window. The
// history counts in the live heap the garbage collector paces itself on,
// so a smaller one also lowers the peak RSS of a process with several
// compressors.
func NewCompressorSized(c Compression, batchBytes int) (*Compressor, error) {
	comp := &Compressor{comp: c}
	if c == Zstd {
		opts := []zstd.EOption{
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true),
			// The history is the window plus one block instead of twice
			// the window, and block buffers grow as needed: measured, no
			// slower on batches of 256 KiB to 1 MiB.
			zstd.WithLowerEncoderMem(true),
		}
		if batchBytes > 0 {
			opts = append(opts, zstd.WithWindowSize(zstdWindow(batchBytes)))
		}
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			return nil, fmt.Errorf("batch: zstd encoder: %w", err)
		}
		comp.enc = enc
	}
	return comp, nil
}

// zstdWindow is the zstd window for batches of n raw bytes: a power of
// two, at least zstd's minimum and at most its default for the fastest
// level.
func zstdWindow(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < 8<<20 {
		w <<= 1
	}
	return w
}

// Records are the encoded records of a batch, taken out of a Builder
// (Take) to be compressed by a Compressor, possibly on another goroutine.
type Records struct {
	Raw         []byte // the records, encoded as in the payload
	Count       int
	First, Last int64 // unix ns of the first and the latest record
}

// Take returns the records added so far and resets the Builder, which goes
// on with buf[:0] as its buffer (nil: it grows one). The returned Raw is
// the Builder's old buffer: the caller owns it now.
func (b *Builder) Take(buf []byte) Records {
	r := Records{Raw: b.raw, Count: b.count, First: b.first, Last: b.last}
	b.raw = buf[:0]
	b.Reset()
	return r
}

// Add appends one record read at ts (unix ns). Timestamps should not go
// backwards within a batch; if one does, it is clamped to the first time.
func (b *Builder) Add(ts int64, rec []byte) {
	if b.count == 0 {
		b.first = ts
	}
	d := ts - b.first
	if d < 0 {
		d = 0
		ts = b.first
	}
	if ts > b.last || b.count == 0 {
		b.last = ts
	}
	b.raw = binary.AppendUvarint(b.raw, uint64(d))
	b.raw = binary.AppendUvarint(b.raw, uint64(len(rec)))
	b.raw = append(b.raw, rec...)
	b.count++
}

// Count is the number of records added since the last Reset.
func (b *Builder) Count() int { return b.count }

// RawSize is the size of the records added so far, once encoded.
func (b *Builder) RawSize() int { return len(b.raw) }

// Reset forgets the records added so far.
func (b *Builder) Reset() {
	b.raw = b.raw[:0]
	b.count = 0
	b.first, b.last = 0, 0
}

// Build appends the encoded batch to dst and returns it. Base offset and
// append time are zero; the header CRC is valid. The Builder is Reset.
func (b *Builder) Build(dst []byte, m Meta) ([]byte, error) {
	r := Records{Raw: b.raw, Count: b.count, First: b.first, Last: b.last}
	out, err := b.c.Build(dst, &r, m)
	if err == nil {
		b.Reset()
	}
	return out, err
}

// Build appends the batch of r to dst and returns it. Base offset and
// append time are zero; the header CRC is valid. r is not changed.
func (c *Compressor) Build(dst []byte, r *Records, m Meta) ([]byte, error) {
	if r.Count == 0 {
		return dst, fmt.Errorf("BUG: batch: Build with no records")
	}
	for _, s := range [...]string{m.Agent, m.Topic, m.Path} {
		if len(s) > MaxStringLen {
			return dst, fmt.Errorf("batch: string of %d bytes exceeds %d", len(s), MaxStringLen)
		}
	}
	start := len(dst)
	var fixed [offStrings]byte
	dst = append(dst, fixed[:]...)
	h := dst[start:]
	h[offMagic] = Magic
	h[offCompress] = byte(c.comp)
	binary.BigEndian.PutUint32(h[offCount:], uint32(r.Count))
	binary.BigEndian.PutUint64(h[offFirstTime:], uint64(r.First))
	binary.BigEndian.PutUint64(h[offLastTime:], uint64(r.Last))
	binary.BigEndian.PutUint64(h[offSourceID:], m.SourceID)
	binary.BigEndian.PutUint64(h[offRangeStart:], uint64(m.RangeStart))
	binary.BigEndian.PutUint64(h[offRangeEnd:], uint64(m.RangeEnd))
	for _, s := range [...]string{m.Agent, m.Topic, m.Path} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Raw)))
	switch c.comp {
	case None:
		dst = append(dst, r.Raw...)
	case Zstd:
		dst = c.enc.EncodeAll(r.Raw, dst)
	case S2:
		// s2.Encode writes into the spare capacity when it is large enough.
		need := s2.MaxEncodedLen(len(r.Raw))
		if need < 0 {
			return dst[:start], fmt.Errorf("%w: %d raw bytes", ErrTooLarge, len(r.Raw))
		}
		dst = slices.Grow(dst, need)
		enc := s2.Encode(dst[len(dst):len(dst)+need], r.Raw)
		dst = dst[:len(dst)+len(enc)]
	}
	size := len(dst) - start
	if size > MaxSize {
		return dst[:start], fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	h = dst[start:]
	binary.BigEndian.PutUint32(h[offLength:], uint32(size-4))
	binary.BigEndian.PutUint32(h[offBodyCRC:], Checksum(h[offBody:]))
	binary.BigEndian.PutUint32(h[offHeaderCRC:], Checksum(h[:offHeaderCRC]))
	return dst, nil
}

// Close releases the encoder.
func (b *Builder) Close() { b.c.Close() }

// Close releases the encoder.
func (c *Compressor) Close() {
	if c.enc != nil {
		c.enc.Close()
	}
}

// Record is one decoded record.
type Record struct {
	Offset int64
	Time   int64 // unix ns
	// Data aliases the decompressed payload (the Decoder's buffer, for
	// Decode): valid until that buffer is used again.
	Data []byte
}

// Decoder decompresses batches. Reuse one per goroutine; it is not safe for
// concurrent use.
type Decoder struct {
	zd  *zstd.Decoder
	buf []byte
}

// NewDecoder returns a Decoder.
func NewDecoder() (*Decoder, error) {
	zd, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxSize))
	if err != nil {
		return nil, fmt.Errorf("batch: zstd decoder: %w", err)
	}
	return &Decoder{zd: zd}, nil
}

// Close releases the decoder.
func (d *Decoder) Close() { d.zd.Close() }

// Decode decompresses a batch that Parse accepted and calls fn for each
// record in order: Decompress into the Decoder's own buffer, then
// EachRecord. It stops at the first error fn returns.
func (d *Decoder) Decode(b []byte, h *Header, fn func(Record) error) error {
	raw, err := d.Decompress(d.buf, b, h)
	if err != nil {
		return err
	}
	if h.Compression != None {
		d.buf = raw[:0]
	}
	return EachRecord(raw, h, fn)
}

// Decompress returns the raw payload of b, a batch that Parse accepted as
// h: written over buf when buf has room (a new slice otherwise), or b's own
// bytes when the batch is not compressed. A payload that does not
// decompress to exactly the header's raw length is ErrCorrupt.
//
// Decompress and EachRecord split Decode, so that one goroutine can
// decompress the next batch while another handles this one's records.
func (d *Decoder) Decompress(buf, b []byte, h *Header) ([]byte, error) {
	payload := b[h.PayloadOffset:]
	var raw []byte
	switch h.Compression {
	case None:
		raw = payload
	case Zstd:
		out, err := d.zd.DecodeAll(payload, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		raw = out
	case S2:
		n, err := s2.DecodedLen(payload)
		if err != nil || n != h.RawLen {
			return nil, fmt.Errorf("%w: s2 length %d, header says %d (%v)", ErrCorrupt, n, h.RawLen, err)
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		out, err := s2.Decode(buf[:n], payload)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		raw = out
	default:
		return nil, fmt.Errorf("%w: unknown compression %d", ErrCorrupt, h.Compression)
	}
	if len(raw) != h.RawLen {
		return nil, fmt.Errorf("%w: payload of %d bytes, header says %d", ErrCorrupt, len(raw), h.RawLen)
	}
	return raw, nil
}

// EachRecord calls fn for each record of raw, the payload Decompress
// returned for the batch h, in order, and stops at the first error fn
// returns. Records that do not fill raw exactly are ErrCorrupt.
func EachRecord(raw []byte, h *Header, fn func(Record) error) error {
	off := h.BaseOffset
	for i := 0; i < h.Count; i++ {
		d, n := binary.Uvarint(raw)
		if n <= 0 {
			return fmt.Errorf("%w: record %d time", ErrCorrupt, i)
		}
		raw = raw[n:]
		l, n := binary.Uvarint(raw)
		if n <= 0 || l > uint64(len(raw)-n) {
			return fmt.Errorf("%w: record %d length", ErrCorrupt, i)
		}
		raw = raw[n:]
		if err := fn(Record{Offset: off, Time: h.FirstTime + int64(d), Data: raw[:l:l]}); err != nil {
			return err
		}
		raw = raw[l:]
		off++
	}
	if len(raw) != 0 {
		return fmt.Errorf("%w: %d bytes after the last record", ErrCorrupt, len(raw))
	}
	return nil
}
