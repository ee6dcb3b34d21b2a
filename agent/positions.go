package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"

	"logship/internal/statefile"
)

// The positions file: see doc.go for the format and the rules.
const (
	positionsFile = "positions"
	positionsKind = "positions"
	// positionsVersion is the version this agent writes. Version 1 (no
	// tail fingerprint) is still read.
	positionsVersion = 2
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
	// Pos is an acknowledged position: every byte before it is stored by
	// an aggregator.
	Pos int64 `json:"pos"`
	// TailFP is the CRC-64 (ECMA) of the TailLen = min(Pos, 1024) bytes
	// before Pos (version 2): a file resumes the entry only if it still
	// holds them.
	TailFP  hex64 `json:"tail_fingerprint"`
	TailLen int   `json:"tail_len"`
	// Draining says whether the config no longer matched the file when
	// the entry was written (rotated away, deleted): a restart drains it
	// even if no glob matches it (resumeUnmatched). Always written; nil
	// in files of older agents, which is taken as draining.
	Draining *bool `json:"draining,omitempty"`
	// high (memory only) is the source's sentHigh when the entry was made
	// (a ghost, an entry released by a reload): the current aggregator may
	// hold bytes up to there, which a file resuming at Pos sends again.
	high int64

	// hasTail is false for entries read from a version 1 file.
	hasTail bool
}

type posBody struct {
	Agent string `json:"agent"`
	// Aggregator is the aggregator the agent sent to last: it may hold
	// batches past the positions, so a restarted agent goes back to it
	// first. Absent in files of older agents (then: home).
	Aggregator aggRef     `json:"aggregator,omitzero"`
	Sources    []posEntry `json:"sources"`
}

// aggRef names an aggregator: the address the agent dialed (its entry in
// the list) and the id it gave in its Welcome.
type aggRef struct {
	Addr string `json:"addr"`
	ID   string `json:"id"`
}

// loadPositions reads the positions file. A missing file is a fresh start.
// A damaged one (bad header, CRC, JSON, version or entries) is kept aside
// as positions.broken, logged at ERROR, and the agent starts afresh: the
// deterministic source ids let the aggregator drop what is sent again.
// Only an error reading an existing file (permissions, I/O) is returned.
//
// Every entry's high is unknown (math.MaxInt64): before the restart the
// agent may have sent its file to the end to the aggregator it was on.
func (a *Agent) loadPositions() ([]posEntry, aggRef, error) {
	v, body, err := statefile.Read(a.posPath, positionsKind)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, aggRef{}, nil
	}
	if err != nil && !errors.Is(err, statefile.ErrCorrupt) {
		return nil, aggRef{}, fmt.Errorf("agent: read positions: %w", err)
	}
	var pb posBody
	if err == nil {
		pb, err = decodePositions(v, body)
	}
	if err != nil {
		kept, kerr := statefile.KeepBroken(a.posPath)
		a.log.Error("positions file is damaged: kept aside, starting from the beginning of every file; the aggregator drops what it already has",
			"path", a.posPath, "kept", kept, "err", err)
		if kerr != nil {
			return nil, aggRef{}, fmt.Errorf("agent: keep damaged positions file: %w", kerr)
		}
		return nil, aggRef{}, nil
	}
	for i := range pb.Sources {
		pb.Sources[i].high = math.MaxInt64
	}
	return pb.Sources, pb.Aggregator, nil
}

func decodePositions(v int, body []byte) (posBody, error) {
	if v != 1 && v != positionsVersion {
		return posBody{}, fmt.Errorf("positions version %d, this agent reads 1 and %d", v, positionsVersion)
	}
	var pb posBody
	if err := json.Unmarshal(body, &pb); err != nil {
		return posBody{}, fmt.Errorf("positions body: %w", err)
	}
	for i := range pb.Sources {
		e := &pb.Sources[i]
		if e.Pos < 0 || e.FPLen < 0 || e.FPLen > fingerprintMax || (e.FPLen == 0 && e.Pos != 0) {
			return posBody{}, fmt.Errorf("positions entry %d (%s): fingerprint_len %d, pos %d", i, e.Path, e.FPLen, e.Pos)
		}
		if v == 1 {
			e.TailFP, e.TailLen = 0, 0
			continue
		}
		if e.TailLen != tailLen(e.Pos) {
			return posBody{}, fmt.Errorf("positions entry %d (%s): tail_len %d, pos %d", i, e.Path, e.TailLen, e.Pos)
		}
		e.hasTail = true
	}
	return pb, nil
}

// savePositions writes the acknowledged positions of every tracked source.
// It runs in the loop goroutine; on error the file stays as it was and the
// next tick tries again.
func (a *Agent) savePositions() error {
	pb := posBody{Agent: a.opts.ID, Aggregator: a.lastAgg, Sources: make([]posEntry, 0, len(a.order))}
	for _, s := range a.order {
		e := posEntry{
			Topic: s.topic, Path: s.path, Dev: s.key.dev, Inode: s.key.ino,
			Salt: hex64(s.salt), Draining: new(s.draining()),
		}
		if s.hasID {
			e.ID, e.FP, e.FPLen = hex64(s.id), hex64(s.fp), s.fpLen
			// The stored position is the last acknowledged one whose
			// tail could be fingerprinted: usually acked itself.
			a.updateTail(s)
			if s.tailPos >= 0 {
				e.Pos, e.TailFP, e.TailLen = s.tailPos, hex64(s.tailFP), s.tailLen
			}
		}
		pb.Sources = append(pb.Sources, e)
	}
	for _, g := range a.ghosts {
		// Device and inode 0: only a copy can claim it (restoredSet).
		e := g.e
		e.Dev, e.Inode = 0, 0
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
	a.savedAgg = a.lastAgg
	if a.needSave {
		a.needSave = false
		for _, s := range a.order {
			s.unsaved = false
		}
	}
	return nil
}
