package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Dial connects to addr, sends the preamble and hello, and waits for the
// Welcome. timeout bounds the whole handshake.
func Dial(addr string, h Hello, timeout time.Duration) (*Conn, *Welcome, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	c := NewConn(nc, 0)
	w, err := c.ClientHandshake(h, timeout)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return c, w, nil
}

// ClientHandshake sends the preamble and h, and reads the answer. On
// success the connection's max frame size is set from the Welcome.
func (c *Conn) ClientHandshake(h Hello, timeout time.Duration) (*Welcome, error) {
	if timeout > 0 {
		c.c.SetDeadline(time.Now().Add(timeout))
		defer c.c.SetDeadline(time.Time{})
	}
	if _, err := c.w.Write(Preamble()); err != nil {
		return nil, err
	}
	h.Version = Version
	if err := c.WriteFrame(TypeHello, h.Encode(nil)); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	prev := c.maxFrame
	c.maxFrame = MaxControlFrame
	t, p, err := c.ReadFrame()
	c.maxFrame = prev
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeWelcome:
		var w Welcome
		if err := w.Decode(p); err != nil {
			return nil, err
		}
		if w.Version < MinVersion || w.Version > Version {
			return nil, fmt.Errorf("%w: server chose %d", ErrVersion, w.Version)
		}
		if w.MaxFrame > 0 {
			c.maxFrame = max(c.maxFrame, int(w.MaxFrame)+FetchResultHeaderSize)
		}
		return &w, nil
	case TypeError:
		return nil, DecodeError(p)
	}
	return nil, fmt.Errorf("%w: %s during handshake", ErrUnexpected, t)
}

// ServerHandshake reads the client's preamble and Hello. The caller then
// answers with Accept or WriteError. timeout bounds the reads.
func (c *Conn) ServerHandshake(timeout time.Duration) (*Hello, error) {
	if timeout > 0 {
		c.c.SetReadDeadline(time.Now().Add(timeout))
		defer c.c.SetReadDeadline(time.Time{})
	}
	var pre [PreambleSize]byte
	if _, err := io.ReadFull(c.r, pre[:]); err != nil {
		return nil, fmt.Errorf("read preamble: %w", err)
	}
	v, err := CheckPreamble(pre[:])
	if err != nil {
		if errors.Is(err, ErrVersion) {
			// A logship client of another version: tell it why.
			c.WriteError(CodeVersion, err.Error())
		}
		return nil, err
	}
	prev := c.maxFrame
	c.maxFrame = MaxControlFrame
	t, p, err := c.ReadFrame()
	c.maxFrame = prev
	if err != nil {
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if t != TypeHello {
		return nil, fmt.Errorf("%w: %s before Hello", ErrUnexpected, t)
	}
	var h Hello
	if err := h.Decode(p); err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	h.Version = v
	return &h, nil
}

// Accept sends the Welcome.
func (c *Conn) Accept(w Welcome) error {
	if err := c.WriteFrame(TypeWelcome, w.Encode(nil)); err != nil {
		return err
	}
	return c.Flush()
}
