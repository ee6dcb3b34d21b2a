package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFramesInAnyFragmentation: frames of every size class (small, at
// the Conn's buffer size, large) arrive over TCP cut at random places;
// each is read whole and in order, with and without read timeouts, and
// the stream's end is io.EOF. Large payloads are read with readv on Linux,
// which takes the next header's first bytes with them: the cuts land in
// every part of a header.
func TestFramesInAnyFragmentation(t *testing.T) {
	for _, timed := range []bool{false, true} {
		for seed := range uint64(4) {
			name := "untimed"
			if timed {
				name = "timed"
			}
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				sizes := []int{0, 1, 4, 5, 6, 100, smallFrame - 1, smallFrame, smallFrame + 1, 20 << 10, 33 << 10, 100 << 10}
				var stream []byte
				var want [][]byte
				for k := range 200 {
					p := make([]byte, sizes[rng.IntN(len(sizes))])
					for i := range p {
						p[i] = byte(k + i*7) // each frame its own bytes
					}
					want = append(want, p)
					stream = append(stream, frame(TypeProduce, p)...)
				}
				cl, s := pipe(t)
				c := NewConn(s, 2<<20)
				if timed {
					c.SetReadTimeouts(time.Minute, time.Minute)
				}
				go func() {
					defer cl.Close()
					rest := stream
					for len(rest) > 0 {
						n := min(len(rest), 1+rng.IntN(3*smallFrame))
						if rng.IntN(4) == 0 {
							n = min(len(rest), 1+rng.IntN(8)) // a few bytes: header cuts
						}
						if _, err := cl.Write(rest[:n]); err != nil {
							return
						}
						rest = rest[n:]
						if rng.IntN(8) == 0 {
							runtime.Gosched() // let the reader catch up, so reads come up short
						}
					}
				}()
				for i, w := range want {
					typ, p, err := c.ReadFrame()
					if err != nil || typ != TypeProduce || !bytes.Equal(p, w) {
						t.Fatalf("frame %d of %d bytes: %s, %d bytes, %v", i, len(w), typ, len(p), err)
					}
				}
				if _, _, err := c.ReadFrame(); err != io.EOF {
					t.Fatalf("after the last frame: %v, want io.EOF", err)
				}
			})
		}
	}
}

// largeFrame returns a Produce frame with an n-byte payload.
func largeFrame(n int) []byte {
	p := bytes.Repeat([]byte{0xa5}, n)
	return frame(TypeProduce, p)
}

// readLarge reads one frame from c, which must be a Produce of n bytes.
func readLarge(t *testing.T, c *Conn, n int) {
	t.Helper()
	typ, p, err := c.ReadFrame()
	if err != nil || typ != TypeProduce || len(p) != n {
		t.Fatalf("got %s of %d bytes, %v; want a Produce of %d", typ, len(p), err, n)
	}
}

// TestReadAheadOfHeader: on Linux a large payload's readv also takes what
// has come of the next frame's header, and the next ReadFrame starts from
// those bytes: whole, in part, or none of it.
func TestReadAheadOfHeader(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("large payloads are read with readv on Linux only")
	}
	cl, s := pipe(t)
	c := NewConn(s, 0)
	const n = 40 << 10
	f := largeFrame(n)
	write := func(b []byte) {
		t.Helper()
		if _, err := cl.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// A loopback write has reached the reader's socket when it returns.
	write(append(append([]byte{}, f...), f[:2]...))
	readLarge(t, c, n)
	if got := c.Ahead(); got != 2 {
		t.Fatalf("ahead %d bytes, want 2", got)
	}
	write(append(append(f[2:len(f):len(f)], f...), f[:5]...))
	readLarge(t, c, n)
	if got := c.Ahead(); got != 5 {
		t.Fatalf("ahead %d bytes, want 5 (at most a header)", got)
	}
	readLarge(t, c, n)
	write(f[5:])
	readLarge(t, c, n)
	if got := c.Ahead(); got != 0 {
		t.Fatalf("ahead %d bytes, want none", got)
	}

	// The stream ends within a header that was read ahead.
	write(append(append([]byte{}, f...), f[:3]...))
	readLarge(t, c, n)
	cl.Close()
	_, _, err := c.ReadFrame()
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "truncated frame header") {
		t.Fatalf("got %v, want a truncated header", err)
	}
}

// TestLargeFrameCutShort: a stream that ends within a large payload is
// io.ErrUnexpectedEOF, and one that ends right after it is io.EOF.
func TestLargeFrameCutShort(t *testing.T) {
	for _, cut := range []int{5, 6, 100, smallFrame + 5, 30 << 10} {
		cl, s := pipe(t)
		c := NewConn(s, 0)
		f := largeFrame(40 << 10)
		go func() {
			cl.Write(f[:cut])
			cl.Close()
		}()
		if _, _, err := c.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	cl, s := pipe(t)
	c := NewConn(s, 0)
	go func() {
		cl.Write(largeFrame(40 << 10))
		cl.Close()
	}()
	readLarge(t, c, 40<<10)
	if _, _, err := c.ReadFrame(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

// TestSlowLargeFrame: a large frame whose payload stops coming is cut at
// the frame timeout.
func TestSlowLargeFrame(t *testing.T) {
	f := largeFrame(100 << 10)
	cl, s := pipe(t)
	c := NewConn(s, 0)
	c.SetReadTimeouts(time.Minute, 100*time.Millisecond)
	if _, err := cl.Write(f[:60<<10]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadFrame(); !errors.Is(err, ErrSlowFrame) {
		t.Fatalf("got %v, want ErrSlowFrame", err)
	}
}

// TestReadvOrdersTheWriterBefore: under -race, what a peer in the same
// process did before it wrote a large frame's last bytes happens before
// the ReadFrame that got them, as with a net.Conn's Read: tests of
// servers rely on it. (A review found unix.Readv alone does not give it.)
func TestReadvOrdersTheWriterBefore(t *testing.T) {
	for _, n := range []int{smallFrame, 40 << 10} { // through the bufio.Reader, then readv
		cl, s := pipe(t)
		c := NewConn(s, 0)
		f := largeFrame(n)
		var x int
		if _, err := cl.Write(f[:len(f)-100]); err != nil {
			t.Fatal(err)
		}
		go func() {
			x = n // published by the write below
			cl.Write(f[len(f)-100:])
		}()
		readLarge(t, c, n)
		if x != n {
			t.Fatalf("x = %d", x)
		}
	}
}
