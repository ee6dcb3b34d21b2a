package wiretest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a target and misbehaves on demand:
// it delays every chunk, cuts (FIN) or resets (RST) the connections open
// now, blackholes them (bytes are read and dropped, nothing is closed: a
// dead peer behind a live route) or refuses new ones. Safe for concurrent
// use. Its goroutines stop at Close, which the test's cleanup calls.
type Proxy struct {
	tb     testing.TB
	ln     net.Listener
	target string

	mu        sync.Mutex
	delay     time.Duration
	blackhole bool
	dropBack  bool // blackhole only what the target sends
	refuse    bool
	pairs     map[*pair]struct{}
	accepted  int
	closed    bool
	wg        sync.WaitGroup
}

type pair struct{ client, server net.Conn }

// NewProxy listens on 127.0.0.1 and forwards to target.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{tb: tb, ln: ln, target: target, pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// SetDelay makes every chunk wait d before it is forwarded (0: none).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetBlackhole starts or stops dropping every byte, both ways, on every
// connection; connections stay open.
func (p *Proxy) SetBlackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
}

// SetDropReplies starts or stops dropping what the target sends (a
// one-way partition: the target gets everything and its answers are lost).
func (p *Proxy) SetDropReplies(on bool) {
	p.mu.Lock()
	p.dropBack = on
	p.mu.Unlock()
}

// SetRefuse makes the proxy close new connections at once (on) or
// forward them again (off).
func (p *Proxy) SetRefuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Cut closes every open connection, both ways, with a FIN.
func (p *Proxy) Cut() { p.closeAll(false) }

// Reset closes every open connection with a RST.
func (p *Proxy) Reset() { p.closeAll(true) }

func (p *Proxy) closeAll(rst bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		for _, c := range []net.Conn{pr.client, pr.server} {
			if tc, ok := c.(*net.TCPConn); ok && rst {
				tc.SetLinger(0)
			}
			c.Close()
		}
		delete(p.pairs, pr)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.closeAll(false)
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.pairs[pr] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(pr, c, s, false)
		go p.pump(pr, s, c, true)
	}
}

// pump copies from src to dst, applying the proxy's mood to each chunk.
func (p *Proxy) pump(pr *pair, src, dst net.Conn, back bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			delay, hole := p.delay, p.blackhole || (back && p.dropBack)
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay) // the network's latency, not synchronisation
			}
			if !hole {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					return
				}
			}
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
			src.Close()
			dst.Close()
			return
		}
	}
}
