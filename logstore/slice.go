package logstore

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"

	"logship/logstore/batch"
)

// Slice is a range of a segment file that holds whole stored batches: what
// a server sends to a consumer without copying it through user space
// (WriteTo uses sendfile on a TCP connection). It keeps its segment open,
// even after retention deletes it or the Store closes, until Release.
type Slice struct {
	// File is the segment file, nil when the store does not run on the
	// operating system's files (tests). Read it only with ReadAt or
	// offset-taking calls: other readers share its descriptor.
	File *os.File
	// Pos and Len are the byte range in File.
	Pos, Len int64
	// Start is the base offset of the first batch in the range, and
	// Next the offset just past its last one: the range holds the
	// records [Start, Next).
	Start, Next int64

	f        file
	seg      *segment
	cache    *segCache
	released atomic.Bool
}

// ReadSlice is Read without the copy: it returns the range of the segment
// file that Read(offset, maxBytes) would return the bytes of (whole
// batches, at least one, all below End and from one segment). offset ==
// End returns (nil, nil); offset < Start or > End an *OutOfRangeError.
// The caller must Release the Slice. Safe concurrently with everything.
func (p *Partition) ReadSlice(offset int64, maxBytes int) (*Slice, error) {
	p.rw.RLock()
	defer p.rw.RUnlock()
	if p.rclosed {
		return nil, ErrClosed
	}
	end := p.endPoint()
	if offset == end.off {
		return nil, nil
	}
	if start := p.Start(); offset < start || offset > end.off {
		return nil, &OutOfRangeError{Topic: p.topic, Partition: p.id, Offset: offset, Start: start, End: end.off}
	}
	seg, pos, size, limit, err := p.locate(offset, end)
	if err != nil {
		return nil, err
	}
	n, err := seg.wholeBatches(pos, size, limit, maxBytes)
	if err != nil {
		p.cache.release(seg)
		return nil, err
	}
	var prefix [batch.PrefixSize]byte
	if _, err := seg.batchPrefix(pos, &prefix); err != nil {
		p.cache.release(seg)
		return nil, err
	}
	first := batch.BaseOffset(prefix[:])
	// Where the range ends: at the durable end, at the end of a sealed
	// segment, or where maxBytes cut it, before a batch whose base offset
	// is the answer (one more small read).
	var next int64
	switch {
	case seg == end.seg && pos+n == end.pos:
		next = end.off
	case seg != end.seg && pos+n == seg.size.Load():
		next = seg.next.Load()
	default:
		if _, err := seg.batchPrefix(pos+n, &prefix); err != nil {
			p.cache.release(seg)
			return nil, err
		}
		next = batch.BaseOffset(prefix[:])
	}
	return &Slice{File: osFileOf(seg.f), Pos: pos, Len: n, Start: first, Next: next, f: seg.f, seg: seg, cache: p.cache}, nil
}

// wholeBatches returns how many bytes from pos, where a batch of size
// bytes starts, hold whole batches: as many as fit in maxBytes (at least
// the first), all below limit. The offset index gives batch boundaries
// every IndexIntervalBytes, so only the batches after the last boundary
// that fits are walked. Caller holds s acquired.
func (s *segment) wholeBatches(pos int64, size int, limit int64, maxBytes int) (int64, error) {
	if limit-pos <= int64(maxBytes) {
		return limit - pos, nil
	}
	if int64(size) >= int64(maxBytes) {
		return int64(size), nil
	}
	stop := pos + int64(maxBytes)
	at := pos + int64(size)
	s.idxMu.RLock()
	entries := s.entries
	s.idxMu.RUnlock()
	// Last index entry at or before stop: a batch starts there.
	lo, hi := 0, len(entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int64(entries[m].pos) <= stop {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo > 0 && int64(entries[lo-1].pos) > at {
		at = int64(entries[lo-1].pos)
	}
	var prefix [batch.PrefixSize]byte
	for at < limit {
		n, err := s.batchPrefix(at, &prefix)
		if err != nil {
			return 0, err
		}
		if at+int64(n) > stop {
			break
		}
		at += int64(n)
	}
	return at - pos, nil
}

// osFileOf returns the *os.File behind f, or nil.
func osFileOf(f file) *os.File {
	if of, ok := f.(osFile); ok {
		return of.File
	}
	return nil
}

// Release lets the segment's file be closed (once evicted or deleted).
// Later calls do nothing. The Slice must not be used after.
func (s *Slice) Release() {
	if s != nil && !s.released.Swap(true) {
		s.cache.release(s.seg)
	}
}

// ReadAt reads from the slice's range (offsets relative to Pos).
func (s *Slice) ReadAt(b []byte, off int64) (int, error) {
	if s.released.Load() {
		return 0, fmt.Errorf("logstore: read of a released Slice")
	}
	if off >= s.Len {
		return 0, io.EOF
	}
	short := false
	if rest := s.Len - off; int64(len(b)) > rest {
		b, short = b[:rest], true
	}
	n, err := s.f.ReadAt(b, s.Pos+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteTo writes the slice's bytes to w. To a *net.TCPConn it uses
// sendfile(2) with an explicit file offset (where the OS has it), so the
// bytes go from the page cache to the socket without a copy through user
// space, and concurrent readers of the same descriptor never share a file
// position; to anything else it copies with pread and Write. It honours
// w's write deadline.
func (s *Slice) WriteTo(w io.Writer) (int64, error) {
	if s.released.Load() {
		return 0, fmt.Errorf("logstore: write of a released Slice")
	}
	var done int64
	if tc, ok := w.(*net.TCPConn); ok && s.File != nil {
		n, handled, err := sendFile(tc, s.File, s.Pos, s.Len)
		if handled || err != nil {
			return n, err
		}
		done = n
	}
	buf := make([]byte, min(s.Len-done, 256<<10))
	for done < s.Len {
		chunk := buf[:min(s.Len-done, int64(len(buf)))]
		if err := readFullAt(s.f, chunk, s.Pos+done); err != nil {
			return done, fmt.Errorf("logstore: read %s at %d: %w", s.seg.path, s.Pos+done, err)
		}
		n, err := w.Write(chunk)
		done += int64(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
