package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"logship/logstore/batch"
)

// Lazily opened segments, the segment cache, slices and the time index
// file.

// countFS counts the files a fileSystem has open, and the most at once.
type countFS struct {
	fileSystem
	open, peak atomic.Int64
}

type countFile struct {
	file
	fs     *countFS
	closed atomic.Bool
}

func (c *countFS) wrap(f file, err error) (file, error) {
	if err != nil {
		return nil, err
	}
	n := c.open.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countFile{file: f, fs: c}, nil
}

func (c *countFS) Create(name string) (file, error) { return c.wrap(c.fileSystem.Create(name)) }
func (c *countFS) OpenRW(name string) (file, error) { return c.wrap(c.fileSystem.OpenRW(name)) }

func (f *countFile) Close() error {
	if !f.closed.Swap(true) {
		f.fs.open.Add(-1)
	}
	return f.file.Close()
}

// procFDs counts this process's open descriptors.
func procFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestManySegmentsBoundedFDs: a partition of 10,000 segments is opened,
// and every segment read, with a bounded number of open files: Open
// checks sealed segments one at a time, the cache keeps at most
// MaxOpenSegments of them open.
func TestManySegmentsBoundedFDs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	const segments, maxOpen = 10_000, 16
	dir := fastTempDir(t)
	opts := testOpts(MinSegmentBytes)
	opts.Fsync, opts.MaxOpenSegments = FsyncNever, maxOpen
	s := openFS(t, dir, opts, noSyncFS{})
	p := partitionT(t, s, testTopic, 0)
	b := makeBatch(t, testTopic, 1, 1, MinSegmentBytes/2) // two never fit in one segment
	h, err := batch.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for range segments {
		if _, err := p.Append(b, &h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Info().Segments; n != segments {
		t.Fatalf("%d segments, want %d", n, segments)
	}
	closeT(t, s)

	before := procFDs(t)
	cfs := &countFS{fileSystem: noSyncFS{}}
	start := time.Now()
	s = openFS(t, dir, opts, cfs)
	defer closeT(t, s)
	t.Logf("opened %d segments in %v, at most %d files open at once", segments, time.Since(start), cfs.peak.Load())
	if peak := cfs.peak.Load(); peak > 4 {
		t.Fatalf("Open had %d files open at once", peak)
	}
	p = s.Lookup(testTopic, 0)
	if got := procFDs(t) - before; got > 4 {
		t.Fatalf("%d more descriptors after Open", got)
	}
	for off := range int64(segments) {
		data, err := p.Read(off, 1)
		if err != nil || !bytes.Equal(data[batch.PrefixSize:], b[batch.PrefixSize:]) {
			t.Fatalf("Read(%d): %v", off, err)
		}
	}
	if off, err := p.OffsetForTime(fixedNow()); err != nil || off != 0 {
		t.Fatalf("OffsetForTime: %d, %v", off, err)
	}
	if got, limit := procFDs(t)-before, maxOpen+4; got > limit {
		t.Fatalf("%d more descriptors after reading every segment, want at most %d", got, limit)
	}
	if n := s.cache.open(); n != maxOpen {
		t.Fatalf("%d sealed segments open, want %d", n, maxOpen)
	}
	if peak := cfs.peak.Load(); peak > maxOpen+4 {
		t.Fatalf("%d files open at once", peak)
	}
}

// fastTempDir is a temporary directory on tmpfs where there is one:
// creating tens of thousands of files there takes a fraction of the time.
func fastTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "logstore-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// sliceBytes reads a Slice whole through WriteTo into a buffer.
func sliceBytes(t testing.TB, sl *Slice) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := sl.WriteTo(&buf)
	if err != nil || n != sl.Len {
		t.Fatalf("WriteTo: %d of %d bytes, %v", n, sl.Len, err)
	}
	return buf.Bytes()
}

// TestReadSliceTCP sends the whole log through ReadSlice and WriteTo over
// a loopback TCP connection (sendfile) and checks it is what Read returns.
func TestReadSliceTCP(t *testing.T) {
	s := openT(t, t.TempDir(), testOpts(4096))
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	appendMany(t, p, 0, 80)
	for _, maxBytes := range []int{1, 300, 5000, 1 << 20} {
		t.Run(fmt.Sprintf("max=%d", maxBytes), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				b, _ := io.ReadAll(c)
				got <- b
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for off := int64(0); off < p.End(); {
				data, err := p.Read(off, maxBytes)
				if err != nil {
					t.Fatal(err)
				}
				sl, err := p.ReadSlice(off, maxBytes)
				if err != nil {
					t.Fatal(err)
				}
				if sl.File == nil || sl.Len != int64(len(data)) || sl.Start > off {
					t.Fatalf("ReadSlice(%d, %d): %+v; Read returned %d bytes", off, maxBytes, sl, len(data))
				}
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if n, err := sl.WriteTo(c.(*net.TCPConn)); err != nil || n != sl.Len {
					t.Fatalf("WriteTo: %d of %d bytes: %v", n, sl.Len, err)
				}
				sl.Release()
				want = append(want, data...)
				off = lastNext(t, data)
			}
			c.Close()
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("received %d bytes, Read returned %d; equal prefix: %v", len(b), len(want), bytes.HasPrefix(want, b))
			}
		})
	}
}

// lastNext returns the offset after the last batch in data.
func lastNext(t testing.TB, data []byte) int64 {
	t.Helper()
	var next int64
	for len(data) > 0 {
		n, err := batch.Size(data)
		if err != nil {
			t.Fatal(err)
		}
		h, err := batch.Parse(data[:n])
		if err != nil {
			t.Fatal(err)
		}
		next, data = h.NextOffset(), data[n:]
	}
	return next
}

// TestReadSliceEqualsRead checks ReadSlice against Read at every offset
// and several limits, through the copying WriteTo and ReadAt, on the real
// and the in-memory file system.
func TestReadSliceEqualsRead(t *testing.T) {
	for _, fsys := range []fileSystem{osFS{}, newMemFS()} {
		t.Run(fmt.Sprintf("%T", fsys), func(t *testing.T) {
			dir := "/store"
			if _, ok := fsys.(osFS); ok {
				dir = t.TempDir()
			}
			s := openFS(t, dir, testOpts(2048), fsys)
			defer closeT(t, s)
			p := partitionT(t, s, testTopic, 3)
			appendMany(t, p, 0, 50)
			for off := range p.End() {
				for _, maxBytes := range []int{0, 200, 1000, 1 << 20} {
					data, err := p.Read(off, maxBytes)
					if err != nil {
						t.Fatal(err)
					}
					sl, err := p.ReadSlice(off, maxBytes)
					if err != nil {
						t.Fatal(err)
					}
					if got := sliceBytes(t, sl); !bytes.Equal(got, data) {
						t.Fatalf("ReadSlice(%d, %d): %d bytes, Read: %d", off, maxBytes, len(got), len(data))
					}
					got := make([]byte, sl.Len)
					if n, err := sl.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
						t.Fatalf("ReadAt: %d, %v", n, err)
					}
					// Start and Next bound the records of the batches in it.
					first, next := int64(-1), int64(-1)
					for q := 0; q < len(data); {
						h, err := batch.ParseUnchecked(data[q : q+mustSize(t, data[q:])])
						if err != nil {
							t.Fatal(err)
						}
						if first < 0 {
							first = h.BaseOffset
						}
						next = h.NextOffset()
						q += h.Size
					}
					if sl.Start != first || sl.Next != next {
						t.Fatalf("ReadSlice(%d, %d): records [%d, %d), the batches hold [%d, %d)", off, maxBytes, sl.Start, sl.Next, first, next)
					}
					sl.Release()
					sl.Release() // twice is fine
				}
			}
			if sl, err := p.ReadSlice(p.End(), 100); sl != nil || err != nil {
				t.Fatalf("ReadSlice(End) = %v, %v", sl, err)
			}
			if _, err := p.ReadSlice(p.End()+1, 100); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("ReadSlice(End+1): %v", err)
			}
		})
	}
}

// TestCacheConcurrentReaders: readers at random offsets, an appender that
// rolls segments and retention, all at once over a cache of two segments;
// run with -race. Every read is checked, and at the end every reference
// is released and at most two sealed segments are open.
func TestCacheConcurrentReaders(t *testing.T) {
	const maxOpen = 2
	dir := t.TempDir()
	opts := testOpts(1024)
	opts.MaxOpenSegments = maxOpen
	s := openFS(t, dir, opts, noSyncFS{})
	want := appendMany(t, partitionT(t, s, testTopic, 3), 0, 200)
	closeT(t, s)
	s = openFS(t, dir, opts, noSyncFS{})
	defer closeT(t, s)
	p := s.Lookup(testTopic, 3)
	byOffset := map[int64][]byte{}
	for _, w := range want {
		for off := w.base; off < w.next(); off++ {
			byOffset[off] = w.data
		}
	}
	var mu sync.Mutex // byOffset grows with the appender
	lookup := func(off int64) []byte {
		mu.Lock()
		defer mu.Unlock()
		return byOffset[off]
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for r := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start, end := p.Start(), p.End()
				off := start + rng.Int64N(end-start)
				var got []byte
				switch i % 3 {
				case 0:
					data, err := p.Read(off, 1)
					if errors.Is(err, ErrOutOfRange) {
						continue // retention moved Start
					}
					if err != nil {
						errc <- err
						return
					}
					got = data
				case 1:
					sl, err := p.ReadSlice(off, 1)
					if errors.Is(err, ErrOutOfRange) {
						continue
					}
					if err != nil {
						errc <- err
						return
					}
					if rng.IntN(2) == 0 {
						runtime.Gosched() // hold it while others evict
					}
					got = make([]byte, sl.Len)
					_, err = sl.ReadAt(got, 0)
					sl.Release()
					if err != nil && err != io.EOF {
						errc <- err
						return
					}
				case 2:
					if o, err := p.OffsetForTime(fixedNow()); err != nil || o != p.Start() && o < start {
						errc <- fmt.Errorf("OffsetForTime = %d, %v; Start %d", o, err, start)
						return
					}
					continue
				}
				if w := lookup(off); !bytes.Equal(got, w) {
					errc <- fmt.Errorf("offset %d: read %d bytes, want %d", off, len(got), len(w))
					return
				}
			}
		})
	}
	for i := 200; i < 400; i++ {
		b := makeBatch(t, testTopic, i, 1+i%4, 20+(i*37)%90)
		h, _ := batch.Parse(b)
		res, err := p.Append(b, &h, nil)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for off := res.BaseOffset; off < res.Next; off++ {
			byOffset[off] = b
		}
		mu.Unlock()
		if err := p.WaitDurable(res.Next); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			p.rw.RLock()
			size := p.segs[0].size.Load()
			p.rw.RUnlock()
			if err := s.SetRetention(0, p.Info().Bytes-size); err != nil { // one segment a time
				t.Fatal(err)
			}
			if err := s.EnforceRetention(fixedNow()); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if p.Start() == 0 {
		t.Fatal("retention deleted nothing")
	}
	if n := s.cache.open(); n > maxOpen {
		t.Fatalf("%d sealed segments open, max %d", n, maxOpen)
	}
	p.rw.RLock()
	defer p.rw.RUnlock()
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	for i, seg := range p.segs {
		if wantRefs := map[bool]int{true: 1, false: 0}[i == len(p.segs)-1]; seg.refs != wantRefs {
			t.Fatalf("segment %d: %d references, want %d", seg.base, seg.refs, wantRefs)
		}
	}
}

// timedSegments writes batches 1ms apart (several per millisecond too)
// over several segments and returns the store directory, the batches,
// their append times and the segment files.
func timedSegments(t *testing.T) (dir string, want []stored, times []int64, segs []string) {
	t.Helper()
	dir = t.TempDir()
	clk := newClock()
	opts := timedOpts()
	opts.Now = clk.Now
	s := openT(t, dir, opts)
	p := partitionT(t, s, testTopic, 3)
	for i := range 40 {
		if i%3 != 0 {
			clk.Add(time.Millisecond)
		}
		b, at := appendAt(t, p, i)
		want, times = append(want, b), append(times, at)
	}
	closeT(t, s)
	segs = segmentFiles(t, partDir(dir))
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	return dir, want, times, segs
}

func timedOpts() Options {
	opts := testOpts(2048)
	opts.IndexIntervalBytes = 100
	return opts
}

// checkTimes checks OffsetForTime at and around every append time.
func checkTimes(t *testing.T, p *Partition, want []stored, times []int64) {
	t.Helper()
	for i, at := range times {
		first := i
		for first > 0 && times[first-1] == at {
			first--
		}
		if got, err := p.OffsetForTime(time.UnixMilli(at)); err != nil || got != want[first].base {
			t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", at, got, err, want[first].base)
		}
	}
	if got, _ := p.OffsetForTime(time.UnixMilli(times[len(times)-1] + 1)); got != p.End() {
		t.Fatalf("OffsetForTime(after the last) = %d, want End %d", got, p.End())
	}
}

// TestTimeIndexRebuilt cuts a sealed segment's time index at every byte,
// flips every byte of it, and removes it: Open rebuilds it (the same
// bytes), says so, and lookups by time are right.
func TestTimeIndexRebuilt(t *testing.T) {
	src, want, times, segs := timedSegments(t)
	tidx := timeIndexPathOf(segs[1])
	orig, err := os.ReadFile(tidx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := decodeTimeIndex(orig, 0)
	if err == nil {
		t.Fatal("a time index with the wrong base offset was accepted")
	}
	base, _ := parseSegmentName(filepath.Base(segs[1]))
	if entries, err = decodeTimeIndex(orig, base); err != nil || len(entries) < 3 {
		t.Fatalf("time index of %s: %d entries, %v", segs[1], len(entries), err)
	}
	other, _ := os.ReadFile(timeIndexPathOf(segs[2]))
	cases := map[string][]byte{"missing": nil, "other segment's": other}
	for cut := 0; cut < len(orig); cut++ {
		cases[fmt.Sprintf("cut=%d", cut)] = orig[:cut]
	}
	for at := range orig {
		b := bytes.Clone(orig)
		b[at] ^= 0x55
		cases[fmt.Sprintf("flip=%d", at)] = b
	}
	// Valid entries that do not match the segment: the last one dropped
	// (count fixed up), or every time shifted.
	cases["last entry dropped"] = encodeTimeIndex(base, entries[:len(entries)-1])
	cases["times shifted"] = encodeTimeIndex(base, slicesMap(entries, func(e timeEntry) timeEntry { return timeEntry{e.t + 1, e.rel} }))
	opts := timedOpts()
	work := fastTempDir(t)
	i := 0
	for name, data := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(work, fmt.Sprint(i))
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			path := rebase(tidx, src, dir)
			if data == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs logBuf
			o := opts
			o.Logger = logs.logger()
			s := openFS(t, dir, o, noSyncFS{})
			defer closeT(t, s)
			// Open checks the header and the first and last entries; the
			// cache checks every entry when a lookup loads the index.
			checkTimes(t, s.Lookup(testTopic, 3), want, times)
			if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) || !strings.Contains(logs.String(), "rebuilding") {
				t.Fatalf("time index not rebuilt (%d bytes, want %d); logs: %s", len(got), len(orig), logs.String())
			}
		})
	}
	t.Run("intact", func(t *testing.T) {
		var logs logBuf
		o := opts
		o.Logger = logs.logger()
		s := openFS(t, copyDir(t, src), o, noSyncFS{})
		defer closeT(t, s)
		if strings.Contains(logs.String(), "rebuilding") {
			t.Fatalf("intact indexes rebuilt: %s", logs.String())
		}
		checkTimes(t, s.Lookup(testTopic, 3), want, times)
	})
}

// TestIndexDamagedAfterOpen: an index file damaged while the store runs
// (after Open checked it) is rebuilt when the cache loads the segment.
func TestIndexDamagedAfterOpen(t *testing.T) {
	src, want, times, segs := timedSegments(t)
	dir := copyDir(t, src)
	opts := timedOpts()
	opts.MaxOpenSegments = 1
	s := openFS(t, dir, opts, noSyncFS{})
	defer closeT(t, s)
	p := s.Lookup(testTopic, 3)
	for _, f := range []string{indexPathOf(segs[0]), timeIndexPathOf(segs[1])} {
		if err := os.WriteFile(rebase(f, src, dir), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkLog(t, p, want)
	checkTimes(t, p, want, times)
}

func TestTimeIndexFormat(t *testing.T) {
	entries := []timeEntry{{1_700_000_000_000, 0}, {1_700_000_000_005, 7}, {1_700_000_000_009, 1 << 31}}
	b := encodeTimeIndex(42, entries)
	if len(b) != fileHeaderSize+3*timeEntrySize || string(b[:4]) != timeIndexMagic || b[4] != timeIndexVersion ||
		binary.BigEndian.Uint64(b[8:]) != 42 || binary.BigEndian.Uint32(b[16:]) != 3 {
		t.Fatalf("header % x", b[:fileHeaderSize])
	}
	e := b[fileHeaderSize+timeEntrySize:]
	if int64(binary.BigEndian.Uint64(e)) != entries[1].t || binary.BigEndian.Uint32(e[8:]) != 7 ||
		binary.BigEndian.Uint32(e[12:]) != batch.Checksum(e[:12]) {
		t.Fatalf("entry % x", e[:timeEntrySize])
	}
	for name, bad := range map[string][]timeEntry{
		"first not at 0":  {{5, 1}},
		"time not rising": {{5, 0}, {5, 1}},
		"rel not rising":  {{5, 0}, {6, 0}},
	} {
		if _, err := decodeTimeIndex(encodeTimeIndex(0, bad), 0); !errors.Is(err, errTimeIndex) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

// FuzzTimeIndex feeds the time index decoders arbitrary bytes: they never
// panic, and whatever they accept encodes back to the same bytes.
func FuzzTimeIndex(f *testing.F) {
	f.Add(encodeTimeIndex(7, []timeEntry{{100, 0}, {200, 3}}))
	f.Add(encodeTimeIndex(0, nil))
	f.Add(appendTimeEntry(nil, timeEntry{-1, 9}))
	f.Add([]byte("LSTI"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, err := decodeTimeEntry(data); err == nil {
			if got := appendTimeEntry(nil, e); !bytes.Equal(got, data[:timeEntrySize]) {
				t.Fatalf("entry %+v encodes to %x, decoded from %x", e, got, data[:timeEntrySize])
			}
		}
		var base int64
		if len(data) >= hdrOffBase+8 {
			base = int64(binary.BigEndian.Uint64(data[hdrOffBase:]))
		}
		entries, err := decodeTimeIndex(data, base)
		if err != nil {
			if !errors.Is(err, errTimeIndex) {
				t.Fatalf("error %v does not wrap errTimeIndex", err)
			}
			return
		}
		for i, e := range entries {
			if (i == 0 && e.rel != 0) || (i > 0 && (e.t <= entries[i-1].t || e.rel <= entries[i-1].rel)) {
				t.Fatalf("accepted entry %d %+v", i, e)
			}
		}
		if got := encodeTimeIndex(base, entries); !bytes.Equal(got, data) {
			t.Fatalf("accepted time index does not encode back")
		}
	})
}

// mustSize is the size of the batch b begins with.
func mustSize(t testing.TB, b []byte) int {
	t.Helper()
	n, err := batch.Size(b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
