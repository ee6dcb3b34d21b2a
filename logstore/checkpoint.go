package logstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"logship/logstore/batch"
)

// recoveryPoint is what a checkpoint says of one partition: every segment
// before the one starting at base is sealed (fsynced, its index files
// written), and bytes [0, pos) of that segment are fsynced whole batches
// that end at offset next. clean adds: that segment is the last one, pos
// is its size and its index files are current (written by Close).
type recoveryPoint struct {
	base, pos, next int64
	clean           bool
}

// encodeCheckpoint returns the checkpoint file for rps.
func encodeCheckpoint(rps map[partKey]recoveryPoint) []byte {
	keys := make([]partKey, 0, len(rps))
	for k := range rps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, comparePartKeys)
	b := make([]byte, cpHdrSize, cpHdrSize+len(keys)*(cpEntryFixedSize+16)+cpCRCSize)
	copy(b, checkpointMagic)
	b[cpHdrOffVersion] = checkpointVersion
	binary.BigEndian.PutUint32(b[cpHdrOffCount:], uint32(len(keys)))
	for _, k := range keys {
		rp := rps[k]
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.topic)))
		b = append(b, k.topic...)
		b = binary.BigEndian.AppendUint32(b, uint32(k.id))
		var flags byte
		if rp.clean {
			flags |= cpFlagClean
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint64(b, uint64(rp.base))
		b = binary.BigEndian.AppendUint64(b, uint64(rp.pos))
		b = binary.BigEndian.AppendUint64(b, uint64(rp.next))
	}
	return binary.BigEndian.AppendUint32(b, batch.Checksum(b))
}

func comparePartKeys(a, b partKey) int {
	return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.id, b.id))
}

// errCheckpoint is wrapped by every reason a checkpoint file is refused.
var errCheckpoint = errors.New("bad checkpoint")

// decodeCheckpoint checks a whole checkpoint file. It never panics.
func decodeCheckpoint(data []byte) (map[partKey]recoveryPoint, error) {
	if len(data) < cpHdrSize+cpCRCSize {
		return nil, fmt.Errorf("%w: %d bytes", errCheckpoint, len(data))
	}
	body := data[:len(data)-cpCRCSize]
	if got, want := binary.BigEndian.Uint32(data[len(body):]), batch.Checksum(body); got != want {
		return nil, fmt.Errorf("%w: crc %08x, want %08x", errCheckpoint, got, want)
	}
	if string(data[:4]) != checkpointMagic || data[cpHdrOffVersion] != checkpointVersion {
		return nil, fmt.Errorf("%w: magic %q version %d, want %q version %d", errCheckpoint, data[:4], data[cpHdrOffVersion], checkpointMagic, checkpointVersion)
	}
	count := int(binary.BigEndian.Uint32(data[cpHdrOffCount:]))
	rest := body[cpHdrSize:]
	if count > len(rest)/cpEntryFixedSize {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errCheckpoint, count, len(rest))
	}
	out := make(map[partKey]recoveryPoint, count)
	var prev partKey
	for i := range count {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: entry %d truncated", errCheckpoint, i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < cpEntryFixedSize+n {
			return nil, fmt.Errorf("%w: entry %d: topic of %d bytes in %d", errCheckpoint, i, n, len(rest))
		}
		f := rest[2+n:]
		k := partKey{topic: string(rest[2 : 2+n]), id: int(binary.BigEndian.Uint32(f))}
		flags := f[4]
		rp := recoveryPoint{
			base:  int64(binary.BigEndian.Uint64(f[5:])),
			pos:   int64(binary.BigEndian.Uint64(f[13:])),
			next:  int64(binary.BigEndian.Uint64(f[21:])),
			clean: flags&cpFlagClean != 0,
		}
		rest = f[29:]
		switch {
		case !batch.ValidName(k.topic) || k.id > math.MaxInt32:
			return nil, fmt.Errorf("%w: entry %d: partition %q %d", errCheckpoint, i, k.topic, k.id)
		case i > 0 && comparePartKeys(prev, k) >= 0:
			return nil, fmt.Errorf("%w: entry %d (%s-%d) not after %s-%d", errCheckpoint, i, k.topic, k.id, prev.topic, prev.id)
		case flags&^cpFlagClean != 0:
			return nil, fmt.Errorf("%w: entry %d: unknown flags %#x", errCheckpoint, i, flags)
		case rp.base < 0 || rp.pos < fileHeaderSize || rp.pos > MaxSegmentBytes+batch.MaxSize || rp.next < rp.base:
			return nil, fmt.Errorf("%w: entry %d (%s-%d): segment %d, byte %d, offset %d", errCheckpoint, i, k.topic, k.id, rp.base, rp.pos, rp.next)
		}
		prev = k
		out[k] = rp
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errCheckpoint, len(rest))
	}
	return out, nil
}

// readCheckpoint returns the recovery points of the checkpoint file, or
// nil when there is none or it cannot be used: then every partition is
// recovered as if it had no checkpoint (logged at WARN when the file is
// damaged).
func (s *Store) readCheckpoint() map[partKey]recoveryPoint {
	path := filepath.Join(s.dir, checkpointName)
	data, err := s.fsys.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var rps map[partKey]recoveryPoint
	if err == nil {
		rps, err = decodeCheckpoint(data)
	}
	if err != nil {
		s.opts.Logger.Warn("ignoring checkpoint: every partition is recovered without it", "file", path, "err", err)
		return nil
	}
	return rps
}

// recoveryPoint returns what a checkpoint may say of p now: the durable
// end, which every fsync, roll and Close moves.
func (p *Partition) recoveryPoint() recoveryPoint {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	e := p.durable
	return recoveryPoint{base: e.seg.base, pos: e.pos, next: e.off}
}

// writeCheckpoint replaces the checkpoint file (tmp, fsync, rename, fsync
// dir) with the recovery point of every partition, unless it would say
// what the file already says. clean (may be nil) names the partitions
// that Close closed cleanly. Open, the checkpoint loop and Close call it,
// one after the other; cpMu makes any caller safe.
func (s *Store) writeCheckpoint(clean map[partKey]bool) error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	rps := make(map[partKey]recoveryPoint)
	for _, p := range s.Partitions() {
		k := partKey{p.topic, p.id}
		rp := p.recoveryPoint()
		rp.clean = clean[k]
		rps[k] = rp
	}
	data := encodeCheckpoint(rps)
	if bytes.Equal(data, s.lastCheckpoint) {
		return nil
	}
	if err := writeFileAtomic(s.fsys, filepath.Join(s.dir, checkpointName), data); err != nil {
		s.lastCheckpoint = nil
		return fmt.Errorf("logstore: write checkpoint: %w", err)
	}
	s.lastCheckpoint = data
	return nil
}

// startCheckpoints starts the goroutine that writes the checkpoint every
// CheckpointInterval and soon after every segment roll. Close stops it
// with stopCheckpoints.
func (s *Store) startCheckpoints() {
	s.cpStop, s.cpDone = make(chan struct{}), make(chan struct{})
	go s.checkpointLoop()
}

func (s *Store) stopCheckpoints() {
	if s.cpStop != nil {
		close(s.cpStop)
		<-s.cpDone
	}
}

func (s *Store) checkpointLoop() {
	defer close(s.cpDone)
	t := time.NewTicker(s.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.cpStop:
			return
		case <-t.C:
		case <-s.rolled:
		}
		if err := s.writeCheckpoint(nil); err != nil {
			s.opts.Logger.Error("checkpoint failed; an unclean restart will verify more segments", "err", err)
		}
	}
}

// notifyRolled tells the Store's checkpoint loop that a segment was
// sealed, without ever blocking the writer.
func (p *Partition) notifyRolled() {
	select {
	case p.rolled <- struct{}{}:
	default:
	}
}
