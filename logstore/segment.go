package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"logship/logstore/batch"
)

// segment is one .log file of a partition and its in-memory sparse index.
//
// Concurrency: the partition's writer (holding Partition.mu) is the only
// one that writes the file, grows size and adds index entries. Readers read
// size atomically and the entries under idxMu, and only ever read bytes
// below the partition's End, which were completely written before End
// moved past them.
type segment struct {
	base int64  // offset of the first record; also in the name and header
	path string // the .log file
	f    file

	// size is the number of bytes written, header included.
	size atomic.Int64

	idxMu   sync.RWMutex
	entries []indexEntry // sorted; see doc.go "Index file"

	// sinceIndex counts bytes appended since the last index entry (or the
	// header). Writer only.
	sinceIndex int64
}

func segmentName(base int64) string { return fmt.Sprintf("%0*d%s", nameDigits, base, logSuffix) }

func indexPathOf(logPath string) string {
	return logPath[:len(logPath)-len(logSuffix)] + indexSuffix
}

// parseSegmentName returns the base offset of a segment file name, or false
// when name is not exactly 20 digits followed by ".log".
func parseSegmentName(name string) (int64, bool) {
	if len(name) != nameDigits+len(logSuffix) || name[nameDigits:] != logSuffix {
		return 0, false
	}
	for _, c := range name[:nameDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	base, err := strconv.ParseInt(name[:nameDigits], 10, 64)
	if err != nil {
		return 0, false
	}
	return base, true
}

// encodeFileHeader returns the 32-byte header shared by segment and index
// files (see doc.go).
func encodeFileHeader(magic string, version byte, base int64) []byte {
	b := make([]byte, fileHeaderSize)
	copy(b[hdrOffMagic:], magic)
	b[hdrOffVersion] = version
	binary.BigEndian.PutUint64(b[hdrOffBase:], uint64(base))
	binary.BigEndian.PutUint32(b[hdrOffCRC:], batch.Checksum(b[:hdrOffCRC]))
	return b
}

// Why a header is refused.
var (
	errShortHeader = errors.New("file shorter than its header")
	errBadHeader   = errors.New("bad file header")
)

// checkFileHeader checks a header read from a segment or index file that
// should start offset base.
func checkFileHeader(b []byte, magic string, version byte, base int64) error {
	if len(b) < fileHeaderSize {
		return fmt.Errorf("%w: %d bytes", errShortHeader, len(b))
	}
	if got, want := binary.BigEndian.Uint32(b[hdrOffCRC:]), batch.Checksum(b[:hdrOffCRC]); got != want {
		return fmt.Errorf("%w: crc %08x, want %08x", errBadHeader, got, want)
	}
	if string(b[hdrOffMagic:hdrOffMagic+4]) != magic {
		return fmt.Errorf("%w: magic %q, want %q", errBadHeader, b[hdrOffMagic:hdrOffMagic+4], magic)
	}
	if b[hdrOffVersion] != version {
		return fmt.Errorf("%w: version %d, want %d", errBadHeader, b[hdrOffVersion], version)
	}
	if got := int64(binary.BigEndian.Uint64(b[hdrOffBase:])); got != base {
		return fmt.Errorf("%w: base offset %d, file name says %d", errBadHeader, got, base)
	}
	return nil
}

// createSegment creates the segment file for base in dir, writes its header
// and fsyncs it. The caller fsyncs dir.
func createSegment(fsys fileSystem, dir string, base int64) (_ *segment, err error) {
	path := filepath.Join(dir, segmentName(base))
	f, err := fsys.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			fsys.Remove(path)
		}
	}()
	if _, err := f.WriteAt(encodeFileHeader(segmentMagic, segmentVersion, base), 0); err != nil {
		return nil, fmt.Errorf("write segment header %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", path, err)
	}
	s := &segment{base: base, path: path, f: f}
	s.size.Store(fileHeaderSize)
	return s, nil
}

// noteBatch records that a batch of size bytes with base offset base was
// appended at pos, adding an index entry when IndexIntervalBytes have gone
// by. Both the append path and recovery call it, so they build the same
// entries. Writer only.
func (s *segment) noteBatch(pos, base int64, size int, interval int) {
	// Append rolls before either field could overflow; a segment from
	// elsewhere that is that big just gets no more entries.
	fits := base-s.base <= math.MaxUint32 && pos <= math.MaxUint32
	if s.sinceIndex >= int64(interval) && fits {
		s.idxMu.Lock()
		s.entries = append(s.entries, indexEntry{rel: uint32(base - s.base), pos: uint32(pos)})
		s.idxMu.Unlock()
		s.sinceIndex = 0
	}
	s.sinceIndex += int64(size)
}

// floor returns the position and base offset of the indexed batch to start
// a search for target from: the last entry at or below it, or the first
// batch of the segment.
func (s *segment) floor(target int64) (pos, base int64) {
	rel := target - s.base
	s.idxMu.RLock()
	defer s.idxMu.RUnlock()
	lo, hi := 0, len(s.entries) // first entry with rel > target
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int64(s.entries[m].rel) <= rel {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return fileHeaderSize, s.base
	}
	e := s.entries[lo-1]
	return int64(e.pos), s.base + int64(e.rel)
}

// find returns the position and size of the batch holding offset target:
// the last batch at or below limit whose base offset is <= target. It
// reads only batch prefixes. target must lie in the segment, below the
// offset the batch ending at limit ends with.
func (s *segment) find(target, limit int64) (pos int64, size int, err error) {
	var prefix [batch.PrefixSize]byte
	at, _ := s.floor(target)
	pos = -1
	for at < limit {
		if err := readFullAt(s.f, prefix[:], at); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: err}
			}
			return 0, 0, fmt.Errorf("logstore: read %s: %w", s.path, err)
		}
		n, err := batch.CheckPrefix(prefix[:])
		if err != nil {
			return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: err}
		}
		if at+int64(n) > limit {
			return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: fmt.Errorf("batch of %d bytes crosses the end %d", n, limit)}
		}
		if batch.BaseOffset(prefix[:]) > target {
			break
		}
		pos, size = at, n
		at += int64(n)
	}
	if pos < 0 {
		return 0, 0, &CorruptionError{Path: s.path, Offset: at, Err: fmt.Errorf("no batch holds offset %d", target)}
	}
	return pos, size, nil
}
