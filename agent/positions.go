package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"

	"logship/internal/statefile"
)

// The positions file: see doc.go for the format and the rules.
const (
	positionsFile    = "positions"
	positionsKind    = "positions"
	positionsVersion = 1
)

// hex64 is a uint64 written as 16 hex digits in JSON, so that ids and
// fingerprints read the same in the file, in logs and in batch dumps.
type hex64 uint64

func (h hex64) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%016x", uint64(h)), nil
}

func (h *hex64) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return fmt.Errorf("bad hex64 %q", b)
	}
	*h = hex64(v)
	return nil
}

// posEntry is one source in the positions file.
type posEntry struct {
	ID    hex64  `json:"id"`
	Topic string `json:"topic"`
	Path  string `json:"path"`
	Dev   uint64 `json:"dev"`
	Inode uint64 `json:"inode"`
	// FP is the CRC-64 (ECMA) of the file's first FPLen bytes. FPLen 0
	// marks a file truncated to nothing that has no new identity yet: it
	// matches only its own (dev, inode), and gets an id with Salt once it
	// has bytes.
	FP    hex64 `json:"fingerprint"`
	FPLen int   `json:"fingerprint_len"`
	Salt  hex64 `json:"salt,omitzero"`
	// Pos is the acknowledged position: every byte before it is stored
	// by an aggregator.
	Pos int64 `json:"pos"`
}

type posBody struct {
	Agent   string     `json:"agent"`
	Sources []posEntry `json:"sources"`
}

// loadPositions reads the positions file. A missing file is a fresh start.
// A damaged one (bad header, CRC, JSON, version or entries) is kept aside
// as positions.broken, logged at ERROR, and the agent starts afresh: the
// deterministic source ids let the aggregator drop what is sent again.
// Only an error reading an existing file (permissions, I/O) is returned.
func (a *Agent) loadPositions() ([]posEntry, error) {
	v, body, err := statefile.Read(a.posPath, positionsKind)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil && !errors.Is(err, statefile.ErrCorrupt) {
		return nil, fmt.Errorf("agent: read positions: %w", err)
	}
	var entries []posEntry
	if err == nil {
		entries, err = decodePositions(v, body)
	}
	if err != nil {
		kept, kerr := statefile.KeepBroken(a.posPath)
		a.log.Error("positions file is damaged: kept aside, starting from the beginning of every file; the aggregator drops what it already has",
			"path", a.posPath, "kept", kept, "err", err)
		if kerr != nil {
			return nil, fmt.Errorf("agent: keep damaged positions file: %w", kerr)
		}
		return nil, nil
	}
	return entries, nil
}

func decodePositions(v int, body []byte) ([]posEntry, error) {
	if v != positionsVersion {
		return nil, fmt.Errorf("positions version %d, this agent reads %d", v, positionsVersion)
	}
	var pb posBody
	if err := json.Unmarshal(body, &pb); err != nil {
		return nil, fmt.Errorf("positions body: %w", err)
	}
	for i, e := range pb.Sources {
		if e.Pos < 0 || e.FPLen < 0 || e.FPLen > fingerprintMax || (e.FPLen == 0 && e.Pos != 0) {
			return nil, fmt.Errorf("positions entry %d (%s): fingerprint_len %d, pos %d", i, e.Path, e.FPLen, e.Pos)
		}
	}
	return pb.Sources, nil
}

// savePositions writes the acknowledged positions of every tracked source.
// It runs in the loop goroutine; on error the file stays as it was and the
// next tick tries again.
func (a *Agent) savePositions() error {
	pb := posBody{Agent: a.opts.ID, Sources: make([]posEntry, 0, len(a.order))}
	for _, s := range a.order {
		e := posEntry{
			Topic: s.topic, Path: s.path, Dev: s.key.dev, Inode: s.key.ino,
			Salt: hex64(s.salt), Pos: s.acked,
		}
		if s.hasID {
			e.ID, e.FP, e.FPLen = hex64(s.id), hex64(s.fp), s.fpLen
		} else {
			e.Pos = 0
		}
		pb.Sources = append(pb.Sources, e)
	}
	slices.SortFunc(pb.Sources, func(x, y posEntry) int {
		return cmp.Or(cmp.Compare(x.Path, y.Path), cmp.Compare(x.Inode, y.Inode))
	})
	body, err := json.MarshalIndent(pb, "", "  ")
	if err != nil {
		panic("BUG: agent: marshal positions: " + err.Error())
	}
	body = append(body, '\n')
	if err := statefile.Write(a.posPath, positionsKind, positionsVersion, body); err != nil {
		a.log.Error("write positions failed", "path", a.posPath, "err", err)
		return err
	}
	a.posDirty = false
	return nil
}

// restoredSet holds the entries of the positions file that no open file
// has claimed yet, indexed for matching new files.
type restoredSet struct {
	byFP  map[fpKey][]*posEntry
	empty map[fileKey]*posEntry // FPLen 0 entries
	byKey map[fileKey]*posEntry // every entry by its (dev, inode); the first one of duplicates
	lens  []int                 // distinct FPLen values, descending
	n     int
}

type fpKey struct {
	fp uint64
	k  int
}

func newRestoredSet(entries []posEntry) *restoredSet {
	r := &restoredSet{byFP: make(map[fpKey][]*posEntry), empty: make(map[fileKey]*posEntry), byKey: make(map[fileKey]*posEntry)}
	for i := range entries {
		e := &entries[i]
		if k := (fileKey{e.Dev, e.Inode}); r.byKey[k] == nil {
			r.byKey[k] = e
		}
		if e.FPLen == 0 {
			r.empty[fileKey{e.Dev, e.Inode}] = e
		} else {
			k := fpKey{uint64(e.FP), e.FPLen}
			r.byFP[k] = append(r.byFP[k], e)
			if !slices.Contains(r.lens, e.FPLen) {
				r.lens = append(r.lens, e.FPLen)
			}
		}
		r.n++
	}
	slices.SortFunc(r.lens, func(x, y int) int { return cmp.Compare(y, x) })
	return r
}

// claim finds the entry for a newly opened file and removes it from the
// set. fpOf hashes the file's first k bytes. An entry matches when its
// fingerprint equals the file's over the entry's own length; among matches
// the one with the same (dev, inode) wins, then one with the same inode,
// then the longest fingerprint. With exact, only an entry with the same
// (dev, inode) is taken. An entry with no fingerprint matches only its own
// (dev, inode).
func (r *restoredSet) claim(key fileKey, size int64, exact bool, fpOf func(k int) (uint64, error)) *posEntry {
	if r.n == 0 {
		return nil
	}
	var best *posEntry
	rank := func(e *posEntry) int {
		switch {
		case e.Dev == key.dev && e.Inode == key.ino:
			return 2
		case e.Inode == key.ino:
			return 1
		}
		return 0
	}
	for _, k := range r.lens { // longest first
		if int64(k) > size {
			continue
		}
		fp, err := fpOf(k)
		if err != nil {
			return nil
		}
		for _, e := range r.byFP[fpKey{fp, k}] {
			if best == nil || rank(e) > rank(best) {
				best = e
			}
		}
	}
	if best != nil && (!exact || rank(best) == 2) {
		r.take(best)
		return best
	}
	if e := r.empty[key]; e != nil {
		r.take(e)
		return e
	}
	return nil
}

// hasKey reports whether an unclaimed entry has the (dev, inode) key.
func (r *restoredSet) hasKey(key fileKey) bool { return r.byKey[key] != nil }

// takeKey removes and returns the unclaimed entry with the (dev, inode)
// key, whatever its fingerprint, or nil.
func (r *restoredSet) takeKey(key fileKey) *posEntry {
	e := r.byKey[key]
	if e != nil {
		r.take(e)
	}
	return e
}

// take removes e from the set.
func (r *restoredSet) take(e *posEntry) {
	key := fileKey{e.Dev, e.Inode}
	if r.byKey[key] == e {
		delete(r.byKey, key)
	}
	if e.FPLen == 0 {
		if r.empty[key] == e {
			delete(r.empty, key)
		}
	} else {
		k := fpKey{uint64(e.FP), e.FPLen}
		r.byFP[k] = slices.DeleteFunc(r.byFP[k], func(x *posEntry) bool { return x == e })
	}
	r.n--
}

// rest returns the unclaimed entries and empties the set.
func (r *restoredSet) rest() []*posEntry {
	var out []*posEntry
	for _, es := range r.byFP {
		out = append(out, es...)
	}
	for _, e := range r.empty {
		out = append(out, e)
	}
	*r = restoredSet{byFP: map[fpKey][]*posEntry{}, empty: map[fileKey]*posEntry{}, byKey: map[fileKey]*posEntry{}}
	return out
}
