package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// DialContext connects to addr over TCP and runs the client handshake.
// ctx cancels the dial and the handshake; timeout (when > 0) bounds both.
// It is the one way clients (agents, sinks, tools) connect, so that
// transport options (TLS, tokens) have one place to go.
func DialContext(ctx context.Context, addr string, h Hello, timeout time.Duration) (*Conn, *Welcome, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	// A ctx done mid-handshake moves the deadline into the past, which
	// wakes the blocked read or write.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c := NewConn(nc, 0)
	w, err := c.ClientHandshake(h, 0)
	if !stop() && err == nil {
		err = ctx.Err() // the deadline may already be in the past: unusable
	}
	if err != nil {
		nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	nc.SetDeadline(time.Time{})
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
