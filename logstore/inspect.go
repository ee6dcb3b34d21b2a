package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"logship/logstore/batch"
)

// Offline inspection for tools (logship log dump, logship log verify). It
// reads a store directory without opening a Store: no lock is taken, no
// recovery runs, nothing is written. It may run beside a live aggregator;
// a batch being appended at that moment can then look torn at the end of
// the active segment, and an index written at that moment can be missing.

// Problem is one thing Verify found wrong: the file and, where it applies,
// the byte position in it (-1 otherwise).
type Problem struct {
	Path string
	Pos  int64
	Err  error
}

func (p Problem) String() string {
	if p.Pos < 0 {
		return fmt.Sprintf("%s: %v", p.Path, p.Err)
	}
	return fmt.Sprintf("%s: byte %d: %v", p.Path, p.Pos, p.Err)
}

// VerifySummary counts what Verify checked.
type VerifySummary struct {
	// StateFiles counts the checkpoint and source snapshots checked.
	StateFiles int64

	Partitions, Segments, Indexes, Batches, Records, Bytes int64
}

// PartitionDir is a partition directory found in a store directory.
type PartitionDir struct {
	Topic string
	ID    int
	Path  string
}

// ListPartitions returns the partition directories of the store at dir,
// sorted by topic and id.
func ListPartitions(dir string) ([]PartitionDir, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []PartitionDir
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if topic, id, ok := parsePartitionDir(e.Name()); ok {
			out = append(out, PartitionDir{Topic: topic, ID: id, Path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// segmentBases lists the base offsets of the segments in a partition
// directory, in order.
func segmentBases(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range ents {
		if base, ok := parseSegmentName(e.Name()); ok && !e.IsDir() {
			bases = append(bases, base)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// Verify checks every segment of every partition of the store at dir:
// segment headers, every batch (both CRCs, and base offsets contiguous
// within and across segments), every entry of every offset index (its
// CRC, and that it points at a batch boundary holding the offset it
// names) and of every time index (its CRC, and that it names a batch
// appended at its time; a sealed segment's must end with its last batch's
// append time). Both kinds of index count in
// VerifySummary.Indexes. It also checks the CRC and layout of the
// CHECKPOINT file and of every source snapshot. Each problem goes to
// report; the error is only for a failure to read the directory.
func Verify(dir string, report func(Problem)) (VerifySummary, error) {
	return VerifyWatched(dir, report, nil)
}

// VerifyWatched is Verify that also calls watch, when not nil, after each
// batch with the batch bytes checked so far: a progress bar's feed.
func VerifyWatched(dir string, report func(Problem), watch func(bytes int64)) (VerifySummary, error) {
	var sum VerifySummary
	parts, err := ListPartitions(dir)
	if err != nil {
		return sum, err
	}
	for _, pd := range parts {
		sum.Partitions++
		if err := verifyPartition(pd, &sum, report, watch); err != nil {
			return sum, err
		}
		if err := verifySnapshots(pd.Path, &sum, report); err != nil {
			return sum, err
		}
	}
	verifyCheckpoint(filepath.Join(dir, checkpointName), &sum, report)
	return sum, nil
}

// verifyCheckpoint checks the CHECKPOINT file's CRC and layout, if there
// is one (a store that never ran long enough has none).
func verifyCheckpoint(path string, sum *VerifySummary, report func(Problem)) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		sum.StateFiles++
		_, err = decodeCheckpoint(data)
	}
	if err != nil {
		report(Problem{path, -1, fmt.Errorf("%w (the next open falls back to verifying every sealed segment)", err)})
	}
}

// verifySnapshots checks every source-state snapshot of a partition.
func verifySnapshots(dir string, sum *VerifySummary, report func(Problem)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		off, ok := parseSnapshotName(e.Name())
		if !ok || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err == nil {
			sum.StateFiles++
			_, err = decodeSnapshot(data, off)
		}
		if err != nil {
			report(Problem{path, -1, fmt.Errorf("%w (the next open falls back to an older snapshot or a scan)", err)})
		}
	}
	return nil
}

func verifyPartition(pd PartitionDir, sum *VerifySummary, report func(Problem), watch func(int64)) error {
	bases, err := segmentBases(pd.Path)
	if err != nil {
		return err
	}
	next := int64(-1)
	for i, base := range bases {
		sum.Segments++
		path := filepath.Join(pd.Path, segmentName(base))
		if next >= 0 && base != next {
			report(Problem{path, -1, fmt.Errorf("segment starts at offset %d, the previous one ends at %d", base, next)})
		}
		end, err := verifySegment(path, base, i == len(bases)-1, sum, report, watch)
		if err != nil {
			return err
		}
		next = end
	}
	return nil
}

// verifySegment checks one segment and its index, and returns the offset
// just past its last good batch.
func verifySegment(path string, base int64, last bool, sum *VerifySummary, report func(Problem), watch func(int64)) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		report(Problem{path, -1, err})
		return base, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return base, err
	}
	hdr := make([]byte, fileHeaderSize)
	if _, err := io.ReadFull(f, hdr); err != nil {
		report(Problem{path, 0, fmt.Errorf("%w: %v", errShortHeader, err)})
		return base, nil
	}
	if err := checkFileHeader(hdr, segmentMagic, segmentVersion, base); err != nil {
		report(Problem{path, 0, err})
		return base, nil
	}
	boundaries := map[int64]int64{} // byte position -> base offset of the batch there
	var times []timeEntry           // every batch: append time, relative offset
	res := scanSegment(f, fileHeaderSize, base, st.Size(), func(pos int64, h *batch.Header) {
		boundaries[pos] = h.BaseOffset
		times = append(times, timeEntry{t: h.AppendTime, rel: uint32(h.BaseOffset - base)})
		sum.Batches++
		sum.Records += int64(h.Count)
		sum.Bytes += int64(h.Size)
		if watch != nil {
			watch(sum.Bytes)
		}
	})
	if res.ioErr != nil {
		return res.next, fmt.Errorf("read %s: %w", path, res.ioErr)
	}
	if res.damage != nil {
		report(Problem{path, res.pos, res.damage})
	}
	verifyIndex(indexPathOf(path), base, st.Size(), res.pos, last, boundaries, sum, report)
	verifyTimeIndex(timeIndexPathOf(path), base, last, res.damage == nil, times, sum, report)
	return res.next, nil
}

// verifyTimeIndex checks a time index against the append times of the
// batches of its segment (whole: good says whether the scan reached the
// end), which must not go back. Like the offset index, the active
// segment's may be absent, and stale: only its entries are checked.
func verifyTimeIndex(path string, base int64, last, good bool, batches []timeEntry, sum *VerifySummary, report func(Problem)) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if !last {
			report(Problem{path, -1, errors.New("missing (the next open rebuilds it)")})
		}
		return
	}
	if err != nil {
		report(Problem{path, -1, err})
		return
	}
	sum.Indexes++
	entries, err := decodeTimeIndex(data, base)
	if err != nil {
		report(Problem{path, -1, err})
		return
	}
	for i := 1; i < len(batches); i++ {
		if batches[i].t < batches[i-1].t {
			report(Problem{path, -1, fmt.Errorf("append times go back at offset %d: %d after %d; lookups by time may miss", base+int64(batches[i].rel), batches[i].t, batches[i-1].t)})
			return
		}
	}
	for i, e := range entries {
		at := int64(fileHeaderSize + i*timeEntrySize)
		k := sort.Search(len(batches), func(j int) bool { return batches[j].rel >= e.rel })
		switch {
		case k == len(batches) && !good:
			return // past the damage, reported already
		case k == len(batches) || batches[k].rel != e.rel:
			report(Problem{path, at, fmt.Errorf("entry %d names offset %d, where no batch starts", i, base+int64(e.rel))})
		case batches[k].t != e.t:
			report(Problem{path, at, fmt.Errorf("entry %d says %d, the batch at offset %d was appended at %d", i, e.t, base+int64(e.rel), batches[k].t)})
		}
	}
	if n := len(batches); !last && good && n > 0 && (len(entries) == 0 || entries[len(entries)-1].t != batches[n-1].t) {
		report(Problem{path, -1, fmt.Errorf("does not end with the last batch's append time %d", batches[n-1].t)})
	}
}

// verifyIndex checks an offset index against the batch boundaries of its
// segment. Entries at or past good (where the segment's damage starts) are
// not checked: the damage is reported already. The active (last) segment's
// index is written only when it is sealed or the store closes, so its
// absence is no problem.
func verifyIndex(path string, base, segSize, good int64, last bool, boundaries map[int64]int64, sum *VerifySummary, report func(Problem)) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if !last {
			report(Problem{path, -1, errors.New("missing (the next open rebuilds it)")})
		}
		return
	}
	if err != nil {
		report(Problem{path, -1, err})
		return
	}
	sum.Indexes++
	entries, err := decodeIndex(data, base, segSize)
	if err != nil {
		report(Problem{path, -1, err})
		return
	}
	for i, e := range entries {
		if int64(e.pos) >= good {
			break
		}
		at := int64(fileHeaderSize + i*indexEntrySize)
		off, ok := boundaries[int64(e.pos)]
		switch {
		case !ok:
			report(Problem{path, at, fmt.Errorf("entry %d points at byte %d, which is not the start of a batch", i, e.pos)})
		case off != base+int64(e.rel):
			report(Problem{path, at, fmt.Errorf("entry %d says offset %d at byte %d, the batch there has offset %d", i, base+int64(e.rel), e.pos, off)})
		}
	}
}

// DumpBatch is one stored batch, as Dump sees it.
type DumpBatch struct {
	Topic     string
	Partition int
	Path      string // segment file
	Pos       int64  // byte position in it
	Header    batch.Header
	Bytes     []byte // the whole batch; valid only during the call
}

// Dump calls fn for each stored batch of the partition (topic, id) of the
// store at dir, in offset order, starting with the batch that holds offset
// from. It stops at the first damaged batch with a *CorruptionError.
func Dump(dir, topic string, id int, from int64, fn func(*DumpBatch) error) error {
	pdir := filepath.Join(dir, fmt.Sprintf("%s-%d", topic, id))
	bases, err := segmentBases(pdir)
	if err != nil {
		return err
	}
	for i, base := range bases {
		if i+1 < len(bases) && bases[i+1] <= from {
			continue
		}
		if err := dumpSegment(filepath.Join(pdir, segmentName(base)), topic, id, from, fn); err != nil {
			return err
		}
	}
	return nil
}

func dumpSegment(path, topic string, id int, from int64, fn func(*DumpBatch) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pos := int64(fileHeaderSize)
	prefix := make([]byte, batch.PrefixSize)
	var buf []byte
	for pos < st.Size() {
		if _, err := f.ReadAt(prefix, pos); err != nil {
			return &CorruptionError{Path: path, Offset: pos, Err: err}
		}
		size, err := batch.CheckPrefix(prefix)
		if err != nil {
			return &CorruptionError{Path: path, Offset: pos, Err: err}
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		b := buf[:size]
		if _, err := f.ReadAt(b, pos); err != nil {
			return &CorruptionError{Path: path, Offset: pos, Err: err}
		}
		h, err := batch.Parse(b)
		if err != nil {
			return &CorruptionError{Path: path, Offset: pos, Err: err}
		}
		if h.NextOffset() > from {
			if err := fn(&DumpBatch{Topic: topic, Partition: id, Path: path, Pos: pos, Header: h, Bytes: b}); err != nil {
				return err
			}
		}
		pos += int64(size)
	}
	return nil
}
