package logstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"logship/logstore/batch"
)

// Source state: what every partition knows about the sources stored in
// it, for the aggregator's exactly-once check (decision 2 of DESIGN.md).
// The format of the snapshot file and the rules are in doc.go, "Source
// state".

// SourceKey names a source within a partition's topic: the agent id and
// the agent's source id, from the batch header.
type SourceKey struct {
	Agent  string
	Source uint64
}

// SourceState is what the log holds of one source: the header fields of
// the source's last stored batch.
type SourceState struct {
	RangeEnd       int64 // the batch's range end: where the source's stored data ends
	LastOffset     int64 // offset of the batch's last record
	LastAppendTime int64 // the batch's append time, unix milliseconds
}

// Sources returns a copy of the partition's source table: for every source
// with a batch in the partition (or in a segment since deleted by
// retention), the state its last written batch left, except sources idle
// for longer than Options.SourceStateTTL (see doc.go, "Source state"). It
// includes batches written but not yet durable. It takes the partition's
// append lock for the copy, so a CheckFunc must not call it.
func (p *Partition) Sources() map[SourceKey]SourceState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.sources.m)
}

// sourceTable is a partition's source state. The partition's writer owns
// it (Partition.mu); recovery builds it before the partition is shared.
type sourceTable struct {
	m map[SourceKey]SourceState
	// maxTime is the greatest append time of any batch applied (unix ms),
	// noSourceTime before the first: the clock pruning is measured against.
	maxTime int64
}

func newSourceTable() *sourceTable {
	return &sourceTable{m: make(map[SourceKey]SourceState), maxTime: noSourceTime}
}

// noSourceTime is sourceTable.maxTime before any batch.
const noSourceTime = math.MinInt64

// apply records a stamped batch: the last batch of a source wins.
func (t *sourceTable) apply(h *batch.Header) {
	t.m[SourceKey{Agent: h.Agent, Source: h.SourceID}] = SourceState{
		RangeEnd:       h.RangeEnd,
		LastOffset:     h.NextOffset() - 1,
		LastAppendTime: h.AppendTime,
	}
	t.maxTime = max(t.maxTime, h.AppendTime)
}

// merge applies the entries of d over t, as if the batches d was built
// from were applied to t in order. Only valid when t holds every batch
// before the first one of d (or is a snapshot taken inside d's range with
// no segment boundary in between, see loadSources).
func (t *sourceTable) merge(d *sourceTable) {
	for k, v := range d.m {
		t.m[k] = v
	}
	t.maxTime = max(t.maxTime, d.maxTime)
}

// prune drops the sources whose last append is more than ttl before the
// newest append in the table, and returns how many. It runs at every
// segment boundary, live and in replay, so that it depends on the log
// only, never on the wall clock: a table rebuilt from the log is the table
// the live partition had. The newest source is never dropped (ttl > 0).
func (t *sourceTable) prune(ttl time.Duration) int {
	if t.maxTime < noSourceTime+ttl.Milliseconds() {
		return 0 // no batch yet, or append times near the start of the int64 range
	}
	limit := t.maxTime - ttl.Milliseconds()
	n := 0
	for k, v := range t.m {
		if v.LastAppendTime < limit {
			delete(t.m, k)
			n++
		}
	}
	return n
}

// snapshotsKept is how many snapshots a partition keeps: the newest and
// two to fall back on when it is damaged.
const snapshotsKept = 3

func snapshotName(off int64) string { return fmt.Sprintf("%0*d%s", nameDigits, off, snapshotSuffix) }

// parseSnapshotName returns the offset of a snapshot file name, or false
// when name is not exactly 20 digits followed by ".snapshot".
func parseSnapshotName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, snapshotSuffix)
	if !ok || len(digits) != nameDigits {
		return 0, false
	}
	return parseSegmentName(digits + logSuffix)
}

// sortedKeys returns the keys of m by agent, then source.
func sortedKeys(m map[SourceKey]SourceState) []SourceKey {
	keys := make([]SourceKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

func compareKeys(a, b SourceKey) int {
	return cmp.Or(strings.Compare(a.Agent, b.Agent), cmp.Compare(a.Source, b.Source))
}

// encodeSnapshot returns the snapshot file of t as of offset off. Entries
// are sorted, so equal tables give equal files.
func encodeSnapshot(off int64, t *sourceTable) []byte {
	keys := sortedKeys(t.m)
	n := snapHdrSize + snapCRCSize
	for _, k := range keys {
		n += snapEntryFixedSize + len(k.Agent)
	}
	b := make([]byte, snapHdrSize, n)
	copy(b, snapshotMagic)
	b[snapHdrOffVersion] = snapshotVersion
	binary.BigEndian.PutUint64(b[snapHdrOffOffset:], uint64(off))
	binary.BigEndian.PutUint64(b[snapHdrOffMaxTime:], uint64(t.maxTime))
	binary.BigEndian.PutUint32(b[snapHdrOffCount:], uint32(len(keys)))
	for _, k := range keys {
		v := t.m[k]
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.Agent)))
		b = append(b, k.Agent...)
		b = binary.BigEndian.AppendUint64(b, k.Source)
		b = binary.BigEndian.AppendUint64(b, uint64(v.RangeEnd))
		b = binary.BigEndian.AppendUint64(b, uint64(v.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(v.LastAppendTime))
	}
	return binary.BigEndian.AppendUint32(b, batch.Checksum(b))
}

// errSnapshot is wrapped by every reason a snapshot file is refused.
var errSnapshot = errors.New("bad snapshot")

// decodeSnapshot checks a whole snapshot file that should hold the state
// as of offset off and returns its table. It never panics.
func decodeSnapshot(data []byte, off int64) (*sourceTable, error) {
	if len(data) < snapHdrSize+snapCRCSize {
		return nil, fmt.Errorf("%w: %d bytes", errSnapshot, len(data))
	}
	body := data[:len(data)-snapCRCSize]
	if got, want := binary.BigEndian.Uint32(data[len(body):]), batch.Checksum(body); got != want {
		return nil, fmt.Errorf("%w: crc %08x, want %08x", errSnapshot, got, want)
	}
	if string(data[:4]) != snapshotMagic || data[snapHdrOffVersion] != snapshotVersion {
		return nil, fmt.Errorf("%w: magic %q version %d, want %q version %d", errSnapshot, data[:4], data[snapHdrOffVersion], snapshotMagic, snapshotVersion)
	}
	if got := int64(binary.BigEndian.Uint64(data[snapHdrOffOffset:])); got != off {
		return nil, fmt.Errorf("%w: offset %d, file name says %d", errSnapshot, got, off)
	}
	count := int(binary.BigEndian.Uint32(data[snapHdrOffCount:]))
	rest := body[snapHdrSize:]
	if count > len(rest)/snapEntryFixedSize {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errSnapshot, count, len(rest))
	}
	t := &sourceTable{
		m:       make(map[SourceKey]SourceState, count),
		maxTime: int64(binary.BigEndian.Uint64(data[snapHdrOffMaxTime:])),
	}
	var prev SourceKey
	for i := range count {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: entry %d truncated", errSnapshot, i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n > batch.MaxStringLen || len(rest) < snapEntryFixedSize+n {
			return nil, fmt.Errorf("%w: entry %d: agent of %d bytes in %d", errSnapshot, i, n, len(rest))
		}
		k := SourceKey{Agent: string(rest[2 : 2+n])}
		f := rest[2+n:]
		k.Source = binary.BigEndian.Uint64(f)
		v := SourceState{
			RangeEnd:       int64(binary.BigEndian.Uint64(f[8:])),
			LastOffset:     int64(binary.BigEndian.Uint64(f[16:])),
			LastAppendTime: int64(binary.BigEndian.Uint64(f[24:])),
		}
		rest = f[32:]
		if i > 0 && compareKeys(prev, k) >= 0 {
			return nil, fmt.Errorf("%w: entry %d (%q, %d) not after (%q, %d)", errSnapshot, i, k.Agent, k.Source, prev.Agent, prev.Source)
		}
		if v.RangeEnd < 0 || v.LastOffset < 0 || v.LastOffset >= off || v.LastAppendTime > t.maxTime {
			return nil, fmt.Errorf("%w: entry %d: range end %d, last offset %d, append time %d in a snapshot at %d, newest append %d",
				errSnapshot, i, v.RangeEnd, v.LastOffset, v.LastAppendTime, off, t.maxTime)
		}
		prev = k
		t.m[k] = v
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errSnapshot, len(rest))
	}
	return t, nil
}

// afterRoll is the end of a roll, under mu, once seg (starting at p.next)
// is the active segment: the recovery point moves into seg (its header is
// fsynced and its directory entry too), the source table is pruned at the
// new segment boundary and snapshotted as of seg's base, and the Store's
// checkpoint loop is woken. A snapshot that cannot be written is only
// logged: the data is safe, and Open falls back to an older snapshot.
func (p *Partition) afterRoll(seg *segment) {
	p.markSynced(endPoint{off: p.next, seg: seg, pos: fileHeaderSize})
	if n := p.sources.prune(p.opts.SourceStateTTL); n > 0 {
		p.log.Info("dropped idle sources from the source table", "sources", n, "offset", p.next, "ttl", p.opts.SourceStateTTL)
	}
	if err := p.writeSnapshot(p.next); err != nil {
		p.log.Warn("cannot write source snapshot; a restart falls back to an older one", "offset", p.next, "err", err)
	}
	p.notifyRolled()
}

// writeSnapshot writes the source table as of offset off, which must be
// the written end, atomically (tmp, fsync, rename, fsync dir), then
// removes the snapshots no longer kept. Caller holds mu, or the partition
// is not shared (recovery) or closed.
func (p *Partition) writeSnapshot(off int64) error {
	path := filepath.Join(p.dir, snapshotName(off))
	if err := writeFileAtomic(p.fsys, path, encodeSnapshot(off, p.sources)); err != nil {
		return fmt.Errorf("logstore: write snapshot %s: %w", path, err)
	}
	if i, found := slices.BinarySearch(p.snaps, off); !found {
		p.snaps = slices.Insert(p.snaps, i, off)
	}
	p.pruneSnapshots()
	return nil
}

// pruneSnapshots removes the snapshot files older than the newest
// snapshotsKept, and those below Start: retention deleted the batches a
// replay from them would need. A removal that fails is logged; the file is
// tried again at the next prune only if Open finds it again. Same callers
// as writeSnapshot.
func (p *Partition) pruneSnapshots() {
	start := p.Start()
	keep := make([]int64, 0, snapshotsKept)
	for i, off := range p.snaps {
		if i >= len(p.snaps)-snapshotsKept && off >= start {
			keep = append(keep, off)
			continue
		}
		path := filepath.Join(p.dir, snapshotName(off))
		if err := p.fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.log.Warn("cannot remove old snapshot", "file", path, "err", err)
		}
	}
	p.snaps = keep
}

// loadSources rebuilds the source table at Open, after the segments are
// recovered (p.segs, p.next): from the newest usable snapshot, replaying
// the batches after it. tail holds the state of the last segment's batches
// when recovery scanned it (nil otherwise); rp is the checkpoint's word on
// the partition (nil: none). Snapshots above the end (their batches were
// cut) or below Start (their batches were deleted) are removed, as is a
// damaged one (logged at WARN); with none left, the table is rebuilt from
// the first segment on (logged at WARN when a snapshot was expected).
func (p *Partition) loadSources(snaps []int64, tail *sourceTable, rp *recoveryPoint) error {
	start, end := p.segs[0].base, p.next
	expected := len(p.segs) > 1 || len(snaps) > 0 || (rp != nil && rp.clean && end > start)
	p.snaps = nil
	for _, off := range snaps {
		path := filepath.Join(p.dir, snapshotName(off))
		if off >= start && off <= end {
			p.snaps = append(p.snaps, off)
			continue
		}
		p.log.Info("removing source snapshot outside the log", "file", path, "start", start, "offset", end)
		if err := p.fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for len(p.snaps) > 0 {
		off := p.snaps[len(p.snaps)-1]
		path := filepath.Join(p.dir, snapshotName(off))
		data, err := p.fsys.ReadFile(path)
		var t *sourceTable
		if err == nil {
			t, err = decodeSnapshot(data, off)
		}
		if err == nil {
			if err := p.replaySources(t, off, tail); err != nil {
				return err
			}
			p.sources = t
			p.pruneSnapshots()
			return nil
		}
		p.log.Warn("damaged source snapshot: falling back to an older one", "file", path, "err", err)
		if err := p.fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		p.snaps = p.snaps[:len(p.snaps)-1]
	}
	if expected {
		p.log.Warn("no usable source snapshot: rebuilding the source table from every segment", "segments", len(p.segs))
	}
	t := newSourceTable()
	if err := p.replaySources(t, start, tail); err != nil {
		return err
	}
	p.sources = t
	return nil
}

// replaySources applies to t, a table as of offset from, every batch from
// offset from to the end, pruning at every segment boundary at or after
// from, exactly as the appends and rolls did. The last segment's batches
// come from tail when it is not nil: applying all of them is right even
// when from lies inside that segment, since each source's last batch wins
// and no boundary lies between the segment's base and from. Every other
// segment is read (whole batches, both CRCs checked: damage is a
// *CorruptionError).
func (p *Partition) replaySources(t *sourceTable, from int64, tail *sourceTable) error {
	for i, seg := range p.segs {
		last := i == len(p.segs)-1
		end := p.next
		if !last {
			end = p.segs[i+1].base
		}
		if end <= from && !last {
			continue
		}
		if seg.base >= from {
			t.prune(p.opts.SourceStateTTL)
		}
		if last && tail != nil {
			t.merge(tail)
			continue
		}
		if end <= from {
			continue
		}
		if err := p.replaySegment(t, seg, from, last); err != nil {
			return err
		}
	}
	return nil
}

// replaySegment applies the batches of seg with base offsets at or after
// from to t. A sealed segment's file is closed after recovery checked it:
// it is opened for the read and closed again.
func (p *Partition) replaySegment(t *sourceTable, seg *segment, from int64, last bool) error {
	f := seg.f
	if !last {
		var err error
		if f, err = p.fsys.OpenRW(seg.path); err != nil {
			return err
		}
		defer f.Close()
	}
	p.log.Info("replaying segment into the source table", "file", seg.path, "from", from)
	res := scanSegment(f, fileHeaderSize, seg.base, seg.size.Load(), func(_ int64, h *batch.Header) {
		if h.BaseOffset >= from {
			t.apply(h)
		}
	})
	if res.ioErr != nil {
		return fmt.Errorf("read %s: %w", seg.path, res.ioErr)
	}
	if res.damage != nil {
		return &CorruptionError{Path: seg.path, Offset: res.pos, Err: res.damage}
	}
	return nil
}
