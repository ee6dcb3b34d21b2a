package wire

// Frame is a frame read by ReadOwnedFrame. Its payload lives in a buffer of
// the process-wide pool that belongs to whoever holds the Frame, not to the
// Conn: it stays valid across later reads, until Release.
type Frame struct {
	Type    Type
	Payload []byte
	buf     *[]byte // nil for an empty payload
}

// Release gives the payload's buffer back to the pool, once the payload is
// no longer used. A Frame is a value: of its copies, release one, once
// (releasing the same one again, or a zero Frame, does nothing).
func (f *Frame) Release() {
	if f.buf != nil {
		putBuf(f.buf)
		f.buf, f.Payload = nil, nil
	}
}

// ReadOwnedFrame is ReadFrame for a reader that hands frames to another
// goroutine while it reads the next: the payload does not alias the Conn's
// buffers. A frame larger than the Conn's own payload buffer is read into
// a pooled buffer that is handed over as it is, without a copy; a smaller
// one is copied into a pooled buffer. Between frames the Conn holds no
// pooled buffer, as with ReadFrame; the caller's memory is the frames it
// has not released. The same timeouts, limits and errors as ReadFrame.
func (c *Conn) ReadOwnedFrame() (Frame, error) {
	t, p, err := c.ReadFrame()
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Type: t}
	switch {
	case c.big != nil:
		f.buf, c.big = c.big, nil
	case len(p) > 0:
		f.buf = getBuf(len(p))
		copy(*f.buf, p)
	default:
		return f, nil
	}
	f.Payload = (*f.buf)[:len(p)]
	return f, nil
}
