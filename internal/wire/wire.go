package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Wire format: do not change. A new layout gets a new Version.
const (
	// Magic opens every connection.
	Magic = "LSHP"
	// Version is the newest protocol version this package speaks.
	Version = 1
	// MinVersion is the oldest protocol version this package speaks.
	MinVersion = 1
	// PreambleSize is the size of the client's preamble.
	PreambleSize = 8
	// DefaultMaxFrame is the max frame size when none is configured.
	DefaultMaxFrame = 16 << 20
	// MaxControlFrame bounds frames that carry no batches, whatever the
	// configured maximum: a handshake never needs more.
	MaxControlFrame = 64 << 10
)

// Type is a frame type.
type Type uint8

// Frame types. Wire format: do not change the numbers.
const (
	TypeHello           Type = 1
	TypeWelcome         Type = 2
	TypeError           Type = 3
	TypeProduce         Type = 4
	TypeProduceAck      Type = 5
	TypeFetch           Type = 6
	TypeFetchResult     Type = 7
	TypeMetadata        Type = 8
	TypeMetadataResult  Type = 9
	TypeOffsetCommit    Type = 10
	TypeOffsetCommitted Type = 11
	TypeOffsetFetch     Type = 12
	TypeOffsets         Type = 13
	TypeOffsetReset     Type = 14
	TypeOffsetForTime   Type = 15
	TypeOffsetTime      Type = 16
	TypeStatus          Type = 17
	TypeStatusResult    Type = 18
)

var typeNames = map[Type]string{
	TypeHello: "Hello", TypeWelcome: "Welcome", TypeError: "Error", TypeProduce: "Produce",
	TypeProduceAck: "ProduceAck", TypeFetch: "Fetch", TypeFetchResult: "FetchResult",
	TypeMetadata: "Metadata", TypeMetadataResult: "MetadataResult", TypeOffsetCommit: "OffsetCommit",
	TypeOffsetCommitted: "OffsetCommitted", TypeOffsetFetch: "OffsetFetch", TypeOffsets: "Offsets",
	TypeOffsetReset: "OffsetReset", TypeOffsetForTime: "OffsetForTime", TypeOffsetTime: "OffsetTime",
	TypeStatus: "Status", TypeStatusResult: "StatusResult",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("frame type %d", uint8(t))
}

// Role is what a client is.
type Role uint8

// Roles. Wire format: do not change the numbers.
const (
	RoleAgent    Role = 1
	RoleConsumer Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleConsumer:
		return "consumer"
	}
	return fmt.Sprintf("role %d", uint8(r))
}

// Errors. Test with errors.Is.
var (
	ErrBadMagic     = errors.New("wire: not a logship client (bad magic)")
	ErrVersion      = errors.New("wire: no common protocol version")
	ErrFrameTooBig  = errors.New("wire: frame too large")
	ErrMalformed    = errors.New("wire: malformed frame")
	ErrUnexpected   = errors.New("wire: unexpected frame")
	ErrRemote       = errors.New("wire: refused by peer")
	errShortPayload = fmt.Errorf("%w: payload too short", ErrMalformed)
)

// RemoteError is an Error frame received from the peer.
type RemoteError struct {
	Code    ErrorCode
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("wire: peer says: %s (%s)", e.Message, e.Code)
}

// Unwrap makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// ErrorCode classifies an Error frame.
type ErrorCode uint16

// Error codes. Wire format: do not change the numbers.
const (
	CodeProtocol    ErrorCode = 1 // malformed or unexpected input
	CodeVersion     ErrorCode = 2 // no common version
	CodeAuth        ErrorCode = 3 // refused credentials or role
	CodeBadRequest  ErrorCode = 4 // a well-formed request that cannot be served
	CodeUnavailable ErrorCode = 5 // shutting down, storage failed
)

func (c ErrorCode) String() string {
	switch c {
	case CodeProtocol:
		return "protocol error"
	case CodeVersion:
		return "version"
	case CodeAuth:
		return "auth"
	case CodeBadRequest:
		return "bad request"
	case CodeUnavailable:
		return "unavailable"
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Preamble returns the 8 bytes a client sends first.
func Preamble() []byte {
	return []byte{'L', 'S', 'H', 'P', MinVersion, Version, 0, 0}
}

// CheckPreamble checks a client's preamble and returns the version to speak.
func CheckPreamble(p []byte) (uint8, error) {
	if len(p) != PreambleSize || string(p[:4]) != Magic {
		return 0, fmt.Errorf("%w: % x", ErrBadMagic, p)
	}
	lo, hi := p[4], p[5]
	if lo > hi || hi < MinVersion || lo > Version {
		return 0, fmt.Errorf("%w: client speaks %d..%d, server %d..%d", ErrVersion, lo, hi, MinVersion, Version)
	}
	return min(hi, Version), nil
}

// Conn reads and writes frames on one connection. Reads and writes may run
// in two goroutines at once (one reader, one writer); neither side is safe
// for concurrent use by several goroutines.
type Conn struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	maxFrame int
	rbuf     []byte
	hdr      [5]byte
	// Counters of bytes read and written, owned by the reading and the
	// writing goroutine respectively.
	ReadBytes, WrittenBytes int64
}

// NewConn wraps c. maxFrame bounds frames read (DefaultMaxFrame when 0).
func NewConn(c net.Conn, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Conn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10), maxFrame: maxFrame}
}

// NetConn returns the underlying connection (for deadlines and Close).
func (c *Conn) NetConn() net.Conn { return c.c }

// SetMaxFrame changes the bound on frames read.
func (c *Conn) SetMaxFrame(n int) { c.maxFrame = n }

// ReadFrame reads one frame. The payload aliases a buffer that the next
// ReadFrame reuses. A length above the max frame size is ErrFrameTooBig and
// nothing more is read: the caller must close the connection.
func (c *Conn) ReadFrame() (Type, []byte, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(c.hdr[:4]))
	if n < 1 {
		return 0, nil, fmt.Errorf("%w: length 0", ErrMalformed)
	}
	if n-1 > c.maxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes, max %d", ErrFrameTooBig, n-1, c.maxFrame)
	}
	t := Type(c.hdr[4])
	n--
	if cap(c.rbuf) < n {
		c.rbuf = make([]byte, n)
	}
	p := c.rbuf[:n]
	if _, err := io.ReadFull(c.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	c.ReadBytes += int64(n + 5)
	return t, p, nil
}

// writeHeader buffers the 5-byte header of a frame whose payload is n bytes.
func (c *Conn) writeHeader(t Type, n int64) error {
	var h [5]byte
	binary.BigEndian.PutUint32(h[:4], uint32(n+1))
	h[4] = byte(t)
	_, err := c.w.Write(h[:])
	return err
}

// WriteFrame buffers one frame whose payload is the concatenation of parts.
// Call Flush to send.
func (c *Conn) WriteFrame(t Type, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if err := c.writeHeader(t, int64(n)); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := c.w.Write(p); err != nil {
			return err
		}
	}
	c.WrittenBytes += int64(n + 5)
	return nil
}

// WriteFrameTo sends one frame whose payload is head followed by the n
// bytes that body writes: the frame header and head go through the buffer,
// which is flushed, then body writes straight to the connection (so a
// body backed by a file can use sendfile). It leaves nothing buffered.
func (c *Conn) WriteFrameTo(t Type, head []byte, body io.WriterTo, n int64) error {
	if err := c.writeHeader(t, int64(len(head))+n); err != nil {
		return err
	}
	if _, err := c.w.Write(head); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.WrittenBytes += int64(5 + len(head))
	written, err := body.WriteTo(c.c)
	c.WrittenBytes += written
	if err == nil && written != n {
		err = fmt.Errorf("wire: frame body wrote %d bytes, %d announced", written, n)
	}
	return err
}

// Flush sends buffered frames.
func (c *Conn) Flush() error { return c.w.Flush() }

// Buffered is the number of bytes written but not flushed.
func (c *Conn) Buffered() int { return c.w.Buffered() }

// WriteError sends an Error frame and flushes; the caller closes after.
func (c *Conn) WriteError(code ErrorCode, msg string) error {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	var e Enc
	e.U16(uint16(code))
	e.Str(msg)
	if err := c.WriteFrame(TypeError, e.B); err != nil {
		return err
	}
	return c.Flush()
}

// DecodeError turns an Error frame's payload into a *RemoteError.
func DecodeError(p []byte) error {
	d := Dec{B: p}
	code := ErrorCode(d.U16())
	msg := d.Str()
	if err := d.Done(); err != nil {
		return err
	}
	return &RemoteError{Code: code, Message: msg}
}
