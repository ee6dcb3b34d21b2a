package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Wire format: do not change. A new layout gets a new Version.
const (
	// Magic opens every connection.
	Magic = "LSHP"
	// Version is the newest protocol version this package speaks.
	// Version 2 adds the Heartbeat frame.
	Version = 2
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

// Heartbeats and idle timeouts. A version 2 client with nothing to send
// sends a Heartbeat every HeartbeatInterval; a server that cuts
// connections sooner than MinIdleTimeout after their last frame would cut
// live idle clients (three intervals leave room for one late beat and a
// slow network), so a server's idle timeout is at least that.
const (
	HeartbeatInterval = 10 * time.Second
	MinIdleTimeout    = 3 * HeartbeatInterval
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
	TypeHeartbeat       Type = 19 // version 2
	TypeAgentReport     Type = 20 // version 2
)

var typeNames = map[Type]string{
	TypeHello: "Hello", TypeWelcome: "Welcome", TypeError: "Error", TypeProduce: "Produce",
	TypeProduceAck: "ProduceAck", TypeFetch: "Fetch", TypeFetchResult: "FetchResult",
	TypeMetadata: "Metadata", TypeMetadataResult: "MetadataResult", TypeOffsetCommit: "OffsetCommit",
	TypeOffsetCommitted: "OffsetCommitted", TypeOffsetFetch: "OffsetFetch", TypeOffsets: "Offsets",
	TypeOffsetReset: "OffsetReset", TypeOffsetForTime: "OffsetForTime", TypeOffsetTime: "OffsetTime",
	TypeStatus: "Status", TypeStatusResult: "StatusResult", TypeAgentReport: "AgentReport", TypeHeartbeat: "Heartbeat",
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

// String is the role's name; a role this version does not know is its
// number alone, so that a message that names it as a role ("unknown role
// %s") reads "unknown role 7", not "unknown role role 7".
func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleConsumer:
		return "consumer"
	}
	return strconv.Itoa(int(r))
}

// Errors. Test with errors.Is.
var (
	ErrBadMagic     = errors.New("wire: not a logship client (bad magic)")
	ErrVersion      = errors.New("wire: no common protocol version")
	ErrFrameTooBig  = errors.New("wire: frame too large")
	ErrMalformed    = errors.New("wire: malformed frame")
	ErrUnexpected   = errors.New("wire: unexpected frame")
	ErrRemote       = errors.New("wire: refused by peer")
	ErrIdle         = errors.New("wire: idle timeout: no frame")
	ErrSlowFrame    = errors.New("wire: read timeout: frame not complete in time")
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

// IsRemote reports whether err holds an Error frame from the peer with
// the given code.
func IsRemote(err error, code ErrorCode) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Code == code
}

// ErrorCode classifies an Error frame.
type ErrorCode uint16

// Error codes. Wire format: do not change the numbers.
const (
	CodeProtocol    ErrorCode = 1 // malformed or unexpected input
	CodeVersion     ErrorCode = 2 // no common version
	CodeAuth        ErrorCode = 3 // refused credentials or role
	CodeBadRequest  ErrorCode = 4 // a well-formed request that cannot be served
	CodeUnavailable ErrorCode = 5 // shutting down, storage failed
	CodeTimeout     ErrorCode = 6 // the peer sent nothing for too long, or a frame too slowly
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
	case CodeTimeout:
		return "timeout"
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
// for concurrent use by several goroutines. Interrupt and SetMaxFrame's
// counterpart Version may be called from any goroutine.
//
// Memory: a Conn holds two buffers of ConnBufferSize and a payload buffer
// of at most smallFrame bytes. A frame larger than that is read into a
// buffer borrowed from a pool shared by every Conn of the process, and
// given back when the next ReadFrame starts, before it waits for data: so
// a connection that once got a large frame and then sits idle holds none.
type Conn struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	maxFrame int
	bulk     Type    // when set, the one type that may exceed MaxControlFrame
	rbuf     []byte  // frames up to smallFrame bytes; kept
	big      *[]byte // the last frame's buffer when it was larger; pooled
	hdr      [5]byte
	version  atomic.Uint32 // negotiated protocol version, 0 before the handshake

	// Large payloads of a TCP connection are read with readv, straight
	// into their buffer, together with the bytes of the next frame's
	// header that have come (ahead; see readLarge). Those bytes come
	// before anything in r, which is empty while aheadN > 0.
	vr     *vreader // nil: large payloads are read through r
	ahead  [5]byte
	aheadN int

	// Read timeouts (SetReadTimeouts), owned by the reader.
	idleTimeout, frameTimeout time.Duration
	armed                     bool // a read deadline is set

	// mu orders Interrupt and LimitReads against the reader's deadline
	// changes, so that a deadline set after them cannot undo them.
	mu          sync.Mutex
	interrupted bool
	limit       time.Time // LimitReads; zero: none

	// Counters of bytes read and written, owned by the reading and the
	// writing goroutine respectively.
	ReadBytes, WrittenBytes int64
}

// ConnBufferSize is the size of a Conn's read and of its write buffer.
// It bounds a connection's fixed cost, not the frames it carries: on a
// plain TCP connection a payload larger than smallFrame is read straight
// into its own buffer (readLarge). A frame larger than the write buffer is
// written as bufio does it: what is buffered is topped up and sent, then
// the rest goes out directly, or through the buffer when it fits (two
// writes and up to one buffer's copy for a 32 KiB batch; small next to
// compressing it).
const ConnBufferSize = 16 << 10

// smallFrame is the largest payload read into the Conn's own buffer.
const smallFrame = 16 << 10

// NewConn wraps c. maxFrame bounds frames read (DefaultMaxFrame when 0).
func NewConn(c net.Conn, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Conn{c: c, r: bufio.NewReaderSize(c, ConnBufferSize), w: bufio.NewWriterSize(c, ConnBufferSize), maxFrame: maxFrame, vr: newVReader(c)}
}

// NetConn returns the underlying connection (for deadlines and Close): a
// *tls.Conn on a TLS connection.
func (c *Conn) NetConn() net.Conn { return c.c }

// SetMaxFrame changes the bound on frames read.
func (c *Conn) SetMaxFrame(n int) { c.maxFrame = n }

// SetBulkType bounds every frame read whose type is not t by
// MaxControlFrame (or the max frame size, when smaller); frames of type t
// keep the max frame size. The type is in the frame's header, so a frame
// over its bound is refused (ErrFrameTooBig) before any buffer is taken
// for it: a peer that announces a huge Heartbeat and then trickles it
// holds no large buffer. A server calls it after the handshake with the
// one type the peer's role may send large (Produce for agents). Zero
// lifts the per-type bound.
func (c *Conn) SetBulkType(t Type) { c.bulk = t }

// Version is the protocol version the handshake settled on (0 before it).
// Safe for concurrent use.
func (c *Conn) Version() uint8 { return uint8(c.version.Load()) }

// SetReadTimeouts bounds ReadFrame: idle is how long it waits for the
// first byte of a frame, frame how long the rest of the frame may take once
// it began (0: no bound). Past idle ReadFrame returns an error wrapping
// ErrIdle; past frame, one wrapping ErrSlowFrame: so a peer that sends
// nothing, or trickles one byte a second, is told apart from a dead one.
// Call it from the reading goroutine.
func (c *Conn) SetReadTimeouts(idle, frame time.Duration) {
	c.idleTimeout, c.frameTimeout = idle, frame
	if idle == 0 && frame == 0 && c.armed {
		c.setReadDeadline(time.Time{})
		c.armed = false
	}
}

// Interrupt makes the blocked ReadFrame, and every later one, fail at once
// (with a timeout error), whatever deadlines the reader sets after it.
// Writes are not affected. Safe for concurrent use; used at shutdown.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	c.c.SetReadDeadline(longAgo)
}

// LimitReads makes the blocked ReadFrame, and every later one, fail (with
// a timeout error) at t at the latest, whatever deadlines the reader sets
// after it; a later call with an earlier t moves the limit earlier, never
// later. Unlike Interrupt it does not mark the Conn interrupted: a server
// uses it from another goroutine to bound how long the reader goes on
// draining a connection it is about to close. Safe for concurrent use.
func (c *Conn) LimitReads(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit.IsZero() || t.Before(c.limit) {
		c.limit = t
	}
	if !c.interrupted {
		c.c.SetReadDeadline(c.limit)
	}
}

// Interrupted reports whether Interrupt was called.
func (c *Conn) Interrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// longAgo is a deadline in the past: setting it makes blocked reads return.
var longAgo = time.Unix(1, 0)

// setReadDeadline sets the read deadline unless the Conn was interrupted,
// and never past the LimitReads limit.
func (c *Conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.interrupted:
		t = longAgo
	case !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)):
		t = c.limit
	}
	c.c.SetReadDeadline(t)
}

// deadline is now+d, or no deadline for d == 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// timeoutErr wraps a read error that is a timeout with sentinel.
func timeoutErr(err, sentinel error, d time.Duration) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%s): %w", sentinel, d, err)
	}
	return err
}

// release gives the last large frame's buffer back to the pool.
func (c *Conn) release() {
	if c.big != nil {
		putBuf(c.big)
		c.big = nil
	}
}

// ReadFrame reads one frame. The payload aliases a buffer that the next
// ReadFrame reuses or gives away. A length above the max frame size is
// ErrFrameTooBig and nothing more is read: the caller must close the
// connection.
func (c *Conn) ReadFrame() (Type, []byte, error) {
	c.release()
	timed := c.idleTimeout > 0 || c.frameTimeout > 0
	if timed {
		c.armed = true
		if c.aheadN == 0 && c.r.Buffered() == 0 {
			c.setReadDeadline(deadline(c.idleTimeout))
			if _, err := c.r.Peek(1); err != nil {
				return 0, nil, timeoutErr(err, ErrIdle, c.idleTimeout)
			}
		}
		c.setReadDeadline(deadline(c.frameTimeout))
	}
	t, p, err := c.readFrame()
	if err != nil && timed {
		err = timeoutErr(err, ErrSlowFrame, c.frameTimeout)
	}
	return t, p, err
}

func (c *Conn) readFrame() (Type, []byte, error) {
	k := copy(c.hdr[:], c.ahead[:c.aheadN])
	c.aheadN = 0
	if _, err := io.ReadFull(c.r, c.hdr[k:]); err != nil {
		if k > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("truncated frame header: %w", err)
		}
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(c.hdr[:4]))
	if n < 1 {
		return 0, nil, fmt.Errorf("%w: length 0", ErrMalformed)
	}
	t := Type(c.hdr[4])
	limit := c.maxFrame
	if c.bulk != 0 && t != c.bulk {
		limit = min(limit, MaxControlFrame)
	}
	if n-1 > limit {
		return 0, nil, fmt.Errorf("%w: %s of %d bytes, max %d", ErrFrameTooBig, t, n-1, limit)
	}
	n--
	var p []byte
	var err error
	if n <= smallFrame {
		if cap(c.rbuf) < n {
			c.rbuf = make([]byte, max(n, 512))
		}
		p = c.rbuf[:n]
		_, err = io.ReadFull(c.r, p)
	} else {
		c.big = getBuf(n)
		p = (*c.big)[:n]
		err = c.readLarge(p)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	c.ReadBytes += int64(n + 5)
	return t, p, nil
}

// readLarge fills p, a payload larger than r's buffer. It takes what r has
// buffered first; on a TCP connection it reads the rest with readv, into
// p and the next frame's header (ahead), so that a peer that keeps the
// socket full costs one read per frame and no copy. Elsewhere the rest is
// read through r, which reads it into p without a copy too, but only
// after it filled its buffer from the socket to find the header.
func (c *Conn) readLarge(p []byte) error {
	got := 0
	if b := c.r.Buffered(); b > 0 {
		got, _ = c.r.Read(p[:min(b, len(p))]) // from the buffer: no read, no error
	}
	if got == len(p) {
		return nil
	}
	if c.vr == nil {
		_, err := io.ReadFull(c.r, p[got:])
		return err
	}
	var err error
	c.aheadN, err = c.vr.fill(p[got:], c.ahead[:])
	return err
}

// FrameReady reports whether the next frame has come whole, so that
// ReadFrame returns it (or its error) without waiting: its header is read
// ahead or buffered, and the rest is buffered or, on a TCP connection on
// Linux, in the socket's receive queue. Reader only.
func (c *Conn) FrameReady() bool {
	have := c.aheadN + c.r.Buffered()
	if have < len(c.hdr) {
		return false
	}
	var hdr [5]byte
	k := copy(hdr[:], c.ahead[:c.aheadN])
	if k < len(hdr) {
		b, err := c.r.Peek(len(hdr) - k) // buffered: no read
		if err != nil {
			return false
		}
		copy(hdr[k:], b)
	}
	need := 4 + int64(binary.BigEndian.Uint32(hdr[:4])) // the frame's bytes
	if int64(have) >= need {
		return true
	}
	return c.vr != nil && int64(have)+int64(c.vr.queued()) >= need
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
