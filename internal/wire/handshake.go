package wire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Dialer holds how a client connects: over TLS or not, and how long the
// connect and handshake may take. Its zero value dials plain TCP with no
// timeout of its own. The token, when there is one, travels in the Hello.
type Dialer struct {
	// TLS, when set, makes the connection TLS (see ClientTLSConfig). An
	// empty ServerName is taken from the address's host.
	TLS *tls.Config
	// Timeout, when > 0, bounds the connect plus both handshakes.
	Timeout time.Duration
}

// DialContext connects to addr over plain TCP and runs the client
// handshake: Dialer{Timeout: timeout}.Dial.
func DialContext(ctx context.Context, addr string, h Hello, timeout time.Duration) (*Conn, *Welcome, error) {
	return Dialer{Timeout: timeout}.Dial(ctx, addr, h)
}

// Dial connects to addr, runs the TLS handshake when d.TLS is set, then
// the protocol handshake. ctx cancels all of it. It is the one way clients
// (agents, sinks, tools) connect, so that transport options have one
// place to go. Errors say which step failed and, for TLS, why in the
// user's terms (see DescribeTLSError).
func (d Dialer) Dial(ctx context.Context, addr string, h Hello) (*Conn, *Welcome, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if d.TLS != nil {
		cfg := d.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			err = DescribeTLSError(err, false)
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				// A plain server reads the ClientHello as a bad preamble and
				// closes without a word.
				err = fmt.Errorf("%w (the server closed the connection during the TLS handshake: does the aggregator have tls enabled?)", err)
			}
			return nil, nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	// A ctx done mid-handshake moves the deadline into the past, which
	// wakes the blocked read or write.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(longAgo) })
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
		if d.TLS != nil {
			// With TLS 1.3 the server checks the client's certificate
			// after the client's side of the handshake is done: a refusal
			// shows here, as an alert on the first read.
			err = DescribeTLSError(err, false)
		}
		return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
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
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w (the server closed the connection without an answer: is it a logship aggregator, and does it use TLS?)", err)
		}
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
		c.version.Store(uint32(w.Version))
		return &w, nil
	case TypeError:
		return nil, DecodeError(p)
	}
	return nil, fmt.Errorf("%w: %s during handshake", ErrUnexpected, t)
}

// ServerHandshake reads the client's preamble and Hello. The caller then
// answers with Accept or WriteError. timeout bounds the reads; Interrupt
// ends them early.
func (c *Conn) ServerHandshake(timeout time.Duration) (*Hello, error) {
	if timeout > 0 {
		c.setReadDeadline(time.Now().Add(timeout))
		defer c.setReadDeadline(time.Time{})
	}
	var pre [PreambleSize]byte
	if n, err := io.ReadFull(c.r, pre[:]); err != nil {
		switch {
		case n > 0 && !strings.HasPrefix(Magic, string(pre[:min(n, len(Magic))])):
			// Too short to be a preamble, and not the start of one.
			return nil, fmt.Errorf("%w: % x", ErrBadMagic, pre[:n])
		case n == 0:
			// Nothing at all: an idle connection, whatever ended it.
			return nil, fmt.Errorf("no preamble: %w", timeoutErr(err, ErrIdle, timeout))
		}
		return nil, fmt.Errorf("read preamble: %w", timeoutErr(err, ErrSlowFrame, timeout))
	}
	v, err := CheckPreamble(pre[:])
	if err != nil {
		if errors.Is(err, ErrVersion) {
			// A logship client of another version: tell it why.
			c.WriteError(CodeVersion, err.Error())
		}
		if pre[0] == 0x16 && pre[1] == 0x03 {
			err = fmt.Errorf("%w: a TLS client on a plain listener (enable tls on the aggregator, or turn it off on the client)", err)
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

// Accept sends the Welcome; the connection then speaks w.Version.
func (c *Conn) Accept(w Welcome) error {
	c.version.Store(uint32(w.Version))
	if err := c.WriteFrame(TypeWelcome, w.Encode(nil)); err != nil {
		return err
	}
	return c.Flush()
}
