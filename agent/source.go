package agent

import (
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"
)

// fingerprintMax is the most bytes of a file's beginning that its
// fingerprint covers, and the most bytes before a stored position that the
// tail fingerprint covers.
const fingerprintMax = 1024

// guardMax is how many bytes before the read position the tailer checks
// again before it reads on (a resumed source checks its tail fingerprint's
// bytes instead, up to fingerprintMax).
const guardMax = 64

var crcTable = crc64.MakeTable(crc64.ECMA)

// fileKey is a file's (device, inode): how an open file is tracked.
type fileKey struct{ dev, ino uint64 }

// source is one file's content (see doc.go). It is owned by the loop
// goroutine.
type source struct {
	key   fileKey
	topic string
	path  string // current path, for batches and logs
	f     *os.File
	in    *input // the input whose globs matched it (multiline rule)

	// Identity. hasID is false only after a truncation to zero bytes,
	// until the file has bytes again.
	hasID bool
	id    uint64
	salt  uint64 // nonzero for a source started by a truncation, or without a birth time
	fp    uint64 // CRC-64 of the first fpLen bytes
	fpLen int

	readPos int64 // next byte to read: every byte before it is in a batch
	acked   int64 // every byte before it is acknowledged
	// sentHigh is the end of what was sent to the aggregator of the
	// current session, acknowledged or not: that aggregator may hold it.
	// The agent moves to another only when nothing could be sent again
	// below it (moveSafe). Reset when the agent changes aggregator.
	sentHigh int64
	// The tail fingerprint: CRC-64 of the tailLen bytes before tailPos, the
	// last acknowledged position whose bytes were fingerprinted (-1: none
	// yet). The positions file stores tailPos with it (see updateTail).
	tailPos int64
	tailFP  uint64
	tailLen int
	// gen is bumped whenever in-flight batches of the source stop
	// counting (resync, truncation, reconnect): acks of batches built
	// under an older gen are ignored.
	gen      uint64
	inflight int // batches in flight
	// shipped: something may have been sent under the current identity
	// (a batch was built, or the source was resumed from the positions
	// file): a change of its first bytes is then a truncation, which
	// leaves a ghost, even at read position 0 (see startChanged).
	shipped bool

	// partialSize is the file size at which only held bytes (an incomplete
	// last line, a multiline record waiting for its next line) followed
	// readPos; while the size stays there, nothing is read until
	// heldSince plus a timeout. heldLines: the held bytes hold a newline
	// (a multiline record).
	partialSize int64
	heldSince   time.Time
	// heldAt is the partialSize that heldSince is for. It outlives a
	// reset of partialSize (a session lost, a Resync: the bytes are read
	// again), so that the same held bytes found again keep their timer:
	// otherwise a connection that drops more often than PartialTimeout
	// would hold a partial line back for ever.
	heldAt    int64
	heldLines bool
	// unsaved: the source's identity is not in the positions file yet; it
	// is not read until it is (so that a crash cannot give it another id
	// after some of it was shipped).
	unsaved bool
	// stopping: its input was removed by a reload; it is closed once its
	// batches in flight are acknowledged. switchTo: its file is now matched
	// by an input of another topic, taken once nothing is in flight.
	stopping bool
	switchTo *input
	// unmatchedSince is when a scan first did not match it (zero: matched).
	unmatchedSince time.Time
	stats          sourceStats
	// The guard: guardFP is the CRC-64 of the guardLen bytes just before
	// guardPos, as the tailer read them (or as the positions file's tail
	// fingerprint describes them, for a resumed source). Before reading on
	// from guardPos, and at every scan, the tailer checks that the file
	// still has them, which catches a truncation followed by growth past
	// the read position between two looks (see guardHolds). guardLen 0:
	// no guard (read position 0).
	guardFP  uint64
	guardLen int
	guardPos int64
	// pendingSince is when unread bytes were first seen (zero: none).
	pendingSince time.Time
	nextCheck    time.Time
	busy         bool   // more to read right away
	seen         uint64 // the last scan whose globs matched it
	reapSize     int64  // size at the previous close check, -1 unknown
	warnedLong   bool
}

// sourceStats are a source's metrics, read by Stats from any goroutine.
type sourceStats struct {
	topic, path           atomic.Pointer[string]
	size, read, acked, up atomic.Int64
}

// publish copies what Stats reports of s that the loop owns.
func (s *source) publish() {
	if p := s.stats.path.Load(); p == nil || *p != s.path {
		path := s.path
		s.stats.path.Store(&path)
	}
	if t := s.stats.topic.Load(); t == nil || *t != s.topic {
		topic := s.topic
		s.stats.topic.Store(&topic)
	}
	s.stats.acked.Store(s.acked)
}

// log attributes of a source.
func (s *source) attrs(kv ...any) []any {
	return append([]any{"topic", s.topic, "source", s.path}, kv...)
}

// fingerprint hashes the first min(size, fingerprintMax) bytes of f.
func fingerprint(f io.ReaderAt, size int64, buf []byte) (fp uint64, k int, err error) {
	k = int(min(size, fingerprintMax))
	fp, err = fingerprintN(f, k, buf)
	return fp, k, err
}

// fingerprintN hashes the first k bytes of f; the file must have them.
func fingerprintN(f io.ReaderAt, k int, buf []byte) (uint64, error) {
	return fingerprintAt(f, 0, k, buf)
}

// fingerprintAt hashes the k bytes of f at off; the file must have them.
// k <= fingerprintMax.
func fingerprintAt(f io.ReaderAt, off int64, k int, buf []byte) (uint64, error) {
	n, err := f.ReadAt(buf[:k], off)
	if n < k {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("file shrank below %d bytes", off+int64(k))
		}
		return 0, err
	}
	return crc64.Checksum(buf[:k], crcTable), nil
}

// tailLen is how many bytes before pos the tail fingerprint covers.
func tailLen(pos int64) int { return int(min(pos, fingerprintMax)) }

// updateTail fingerprints the bytes just before s's acknowledged position,
// for the positions file (see doc.go): a restarted agent resumes a file at
// a stored position only if the file still holds these bytes there. It
// runs when the positions file is written, one read of at most
// fingerprintMax bytes per source whose position moved. If the read fails
// (the file shrank: a truncation the loop is about to see), the previous
// position and its tail are kept: the positions file then lags, which
// costs a resend that the aggregator drops, never a skip.
func (a *Agent) updateTail(s *source) {
	if s.tailPos == s.acked {
		return
	}
	n := tailLen(s.acked)
	fp, err := fingerprintAt(s.f, s.acked-int64(n), n, a.fpBuf)
	if err != nil {
		a.log.Debug("tail fingerprint failed; the positions file keeps the previous position", s.attrs("pos", s.acked, "err", err)...)
		return
	}
	s.tailPos, s.tailFP, s.tailLen = s.acked, fp, n
}

// birth is a file's creation time (statx btime), which tells apart two
// files that had the same (device, inode) one after the other.
type birth struct {
	sec  int64
	nsec uint32
}

// sourceID derives a source's id from its fingerprint, file, birth time and
// salt. With a birth time and no salt it is deterministic for one physical
// file: the same file with the same beginning gets the same id after the
// positions file is lost, so the aggregator's dedup catches what is sent
// again; a new file on a reused inode has another birth time, so another
// id, even with the same first bytes.
func sourceID(fp uint64, k int, key fileKey, b birth, salt uint64) uint64 {
	var buf [8 + 4 + 8 + 8 + 8 + 8 + 4]byte
	binary.BigEndian.PutUint64(buf[0:], fp)
	binary.BigEndian.PutUint32(buf[8:], uint32(k))
	binary.BigEndian.PutUint64(buf[12:], key.dev)
	binary.BigEndian.PutUint64(buf[20:], key.ino)
	binary.BigEndian.PutUint64(buf[28:], salt)
	binary.BigEndian.PutUint64(buf[36:], uint64(b.sec))
	binary.BigEndian.PutUint32(buf[44:], b.nsec)
	h := fnv.New64a()
	h.Write(buf[:])
	return h.Sum64()
}

// identify gives s its id from its current content. size > 0. Where the
// file has no birth time, an unsalted source gets a random salt: without
// it, a new file on a reused inode that begins like the old one would get
// the old one's id, and the aggregator would drop its first bytes as
// duplicates.
func (a *Agent) identify(s *source, size int64) error {
	fp, k, err := fingerprint(s.f, size, a.fpBuf)
	if err != nil {
		return err
	}
	b, ok := birthTime(s.f)
	if !ok && s.salt == 0 {
		s.salt = rand.Uint64() | 1
	}
	s.fp, s.fpLen = fp, k
	s.id = sourceID(fp, k, s.key, b, s.salt)
	s.hasID = true
	a.posDirty = true
	a.markUnsaved(s) // saved before anything is shipped under it
	return nil
}

// refreshFingerprint extends the fingerprint of a source first seen with
// fewer than fingerprintMax bytes, so that matching after a restart has
// more to go on; the id does not change. If the first fpLen bytes no longer
// hash to the fingerprint, the file was rewritten under the agent: that is
// a truncation.
func (a *Agent) refreshFingerprint(s *source, size int64, now time.Time) {
	old, err := fingerprintN(s.f, s.fpLen, a.fpBuf)
	if err != nil {
		return // a shrink is caught by the size check
	}
	if old != s.fp {
		a.truncated(s, size, now, "content of the first bytes changed")
		return
	}
	if fp, k, err := fingerprint(s.f, size, a.fpBuf); err == nil {
		s.fp, s.fpLen = fp, k
		a.posDirty = true
	}
}

// truncated restarts s as a new source at offset 0: the old content is
// gone. Its batches in flight no longer count; a salt makes the new id
// differ from the old one even when the new content starts with the same
// bytes.
func (a *Agent) truncated(s *source, size int64, now time.Time, why string) {
	a.log.Info("file truncated: starting a new source at offset 0", s.attrs("reason", why, "size", size, "position", s.readPos, "acked", s.acked)...)
	a.addGhost(s, now)
	a.dropFlights(s)
	s.gen++
	s.readPos, s.acked, s.sentHigh = 0, 0, 0
	s.tailPos, s.tailFP, s.tailLen = 0, 0, 0 // the old tail is of the old content
	s.hasID = false
	s.shipped = false
	s.salt = uint64(now.UnixNano()) | 1
	s.partialSize, s.heldAt = 0, 0
	s.pendingSince = time.Time{}
	s.guardLen, s.guardPos = 0, 0
	a.posDirty = true
	a.markUnsaved(s)
	if size > 0 {
		if err := a.identify(s, size); err != nil {
			a.log.Warn("fingerprint failed; will retry", s.attrs("err", err)...)
		}
	}
}

// closeSource closes s's file and forgets it. The caller removes it from
// a.order.
func (a *Agent) closeSource(s *source) {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if a.sources[s.key] == s {
		delete(a.sources, s.key)
	}
	a.posDirty = true
}

// markUnsaved holds s back from reading until the positions file names its
// identity (see source.unsaved).
func (a *Agent) markUnsaved(s *source) {
	s.unsaved = true
	a.needSave = true
}
