package agent

import (
	"cmp"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Matching the files of the first scan after a start against the entries
// of the positions file (the rule is in doc.go, "Sources and their
// identity"). Everything here runs in the loop goroutine.

// probe reads what matching needs from one new file: fingerprints of its
// first bytes and of the bytes before a stored position. The file's first
// bytes are hashed once per length.
type probe struct {
	r    io.ReaderAt
	size int64
	buf  []byte // at least fingerprintMax bytes; shared
	fps  map[int]uint64
}

func newProbe(r io.ReaderAt, size int64, buf []byte) *probe {
	return &probe{r: r, size: size, buf: buf, fps: make(map[int]uint64)}
}

// fp hashes the first k bytes; ok is false when the file does not have
// them (or cannot be read).
func (p *probe) fp(k int) (fp uint64, ok bool) {
	if int64(k) > p.size {
		return 0, false
	}
	if fp, ok := p.fps[k]; ok {
		return fp, true
	}
	fp, err := fingerprintN(p.r, k, p.buf)
	if err != nil {
		return 0, false
	}
	p.fps[k] = fp
	return fp, true
}

// holds reports whether the file is the content e describes, up to e's
// position: its first bytes hash to e's fingerprint, it is at least e.Pos
// long and, when e has one (positions version 2), the bytes before e.Pos
// hash to e's tail fingerprint.
func (p *probe) holds(e *posEntry) bool {
	if fp, ok := p.fp(e.FPLen); !ok || fp != uint64(e.FP) || p.size < e.Pos {
		return false
	}
	if !e.hasTail {
		return true
	}
	fp, err := fingerprintAt(p.r, e.Pos-int64(e.TailLen), e.TailLen, p.buf)
	return err == nil && fp == uint64(e.TailFP)
}

// restoredSet holds the entries of the positions file that no open file
// has claimed yet, indexed for matching new files.
type restoredSet struct {
	byFP  map[fpKey][]*posEntry
	byKey map[fileKey]*posEntry // every entry by its (dev, inode); the first one of duplicates
	lens  []int                 // distinct FPLen values, descending
	// lost are entries whose own (dev, inode) is a file that no longer
	// holds their content. They stay claimable by a copy, and are dropped
	// without a warning when nothing claims them.
	lost map[*posEntry]bool
	n    int
}

type fpKey struct {
	fp uint64
	k  int
}

func newRestoredSet(entries []posEntry) *restoredSet {
	r := &restoredSet{byFP: make(map[fpKey][]*posEntry), byKey: make(map[fileKey]*posEntry), lost: make(map[*posEntry]bool)}
	for i := range entries {
		e := &entries[i]
		if k := (fileKey{e.Dev, e.Inode}); r.byKey[k] == nil {
			r.byKey[k] = e
		}
		if e.FPLen > 0 {
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

// hasKey reports whether an unclaimed entry has the (dev, inode) key.
func (r *restoredSet) hasKey(key fileKey) bool { return r.byKey[key] != nil }

// claimOwn is the first pass: it matches a new file against the entry of
// its own (dev, inode). It returns the entry to resume, removed from the
// set, or the entry the file has lost: the file is no longer the content
// the entry describes (emptied, truncated, rewritten or replaced while the
// agent was stopped), and must start as a new, salted source from 0. A
// lost entry stays in the set for claimCopy: a copy of the old content
// (copytruncate's) may resume it. An entry without a fingerprint (a file
// truncated to nothing that had no new identity yet) is always resumed: it
// is at position 0 and keeps its salt.
func (r *restoredSet) claimOwn(key fileKey, p *probe) (resume, lost *posEntry) {
	e := r.byKey[key]
	switch {
	case e == nil:
		return nil, nil
	case e.FPLen == 0 || p.holds(e):
		r.take(e)
		return e, nil
	}
	r.lost[e] = true
	return nil, e
}

// claimCopy is the second pass, for the files that the first pass left
// without an entry: it finds an entry whose content the file holds (its
// first bytes, its length and the bytes before the entry's position), of
// another (dev, inode): a copy of a file, or the file itself on a device
// whose number changed. Among several, one with the same inode wins, then
// the longest fingerprint. An entry read from a version 1 positions file
// (no tail fingerprint) is never resumed by fingerprint alone: a new
// source from 0 is safer than a silent skip.
func (r *restoredSet) claimCopy(key fileKey, p *probe) *posEntry {
	if r.n == 0 || p.size == 0 {
		return nil
	}
	var best *posEntry
	rank := func(e *posEntry) int {
		if e.Inode == key.ino {
			return 1
		}
		return 0
	}
	for _, k := range r.lens { // longest first
		fp, ok := p.fp(k)
		if !ok {
			continue
		}
		for _, e := range r.byFP[fpKey{fp, k}] {
			if !e.hasTail || (best != nil && rank(e) <= rank(best)) || !p.holds(e) {
				continue
			}
			best = e
		}
	}
	if best != nil {
		r.take(best)
	}
	return best
}

// take removes e from the set.
func (r *restoredSet) take(e *posEntry) {
	key := fileKey{e.Dev, e.Inode}
	if r.byKey[key] == e {
		delete(r.byKey, key)
	}
	if e.FPLen > 0 {
		k := fpKey{uint64(e.FP), e.FPLen}
		r.byFP[k] = slices.DeleteFunc(r.byFP[k], func(x *posEntry) bool { return x == e })
	}
	delete(r.lost, e)
	r.n--
}

// rest returns the unclaimed entries, except lost ones, and empties the
// set.
func (r *restoredSet) rest() []*posEntry {
	var out []*posEntry
	seen := make(map[*posEntry]bool)
	add := func(e *posEntry) {
		if !seen[e] && !r.lost[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	for _, es := range r.byFP {
		for _, e := range es {
			add(e)
		}
	}
	for _, e := range r.byKey {
		add(e)
	}
	*r = restoredSet{byFP: map[fpKey][]*posEntry{}, byKey: map[fileKey]*posEntry{}, lost: map[*posEntry]bool{}}
	return out
}

// resumeUnmatched is the last pass of the first scan, for the entries no
// file the globs match has claimed (rest): an entry's file may still be
// there under a name no glob matches, rotated away before the agent read
// it to its end (while the agent was stopped, or before it stopped). It is
// looked for at the entry's path, then, renamed on since (a shift
// rotation: app.log.1 to app.log.2), in the same directory by the entry's
// (dev, inode); either way it is resumed only if it holds the entry's
// content (probe.holds: its first bytes and those before the position).
// A resumed file is drained as a running agent drains a rotated one: read
// to its end, acknowledged, closed (reap), or given up after DrainTimeout.
// It returns the entries it did not resume.
func (a *Agent) resumeUnmatched(rest []*posEntry, now time.Time) (left []*posEntry) {
	for _, e := range rest {
		if !a.resumeOutsideGlobs(e, now) {
			left = append(left, e)
		}
	}
	return left
}

// resumeOutsideGlobs resumes e from its file under a name no glob matches,
// if it finds it (resumeUnmatched).
func (a *Agent) resumeOutsideGlobs(e *posEntry, now time.Time) bool {
	in := a.inputForEntry(e)
	if in == nil || e.FPLen == 0 || len(a.sources)+len(a.held) >= a.opts.MaxOpenFiles {
		return false
	}
	try := func(path string) bool {
		nf := a.openUnmatched(in, path)
		if nf == nil {
			return false
		}
		if !nf.probe.holds(e) {
			nf.f.Close()
			return false
		}
		a.startSource(nf, e, nil, now)
		if s := a.sources[nf.key]; s != nil {
			s.seen = a.scanGen - 1 // no glob matched it: reap drains and closes it
			a.log.Info("resuming a file no glob matches (rotated away before it was read to its end): draining it",
				s.attrs("pos", e.Pos, "size", nf.size)...)
		}
		return true
	}
	if try(e.Path) {
		return true
	}
	dir := filepath.Dir(e.Path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := fileKey{e.Dev, e.Inode}
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		if p == e.Path || !de.Type().IsRegular() {
			continue
		}
		if fi, err := de.Info(); err == nil {
			if key, ok := keyOf(fi); ok && key == want && try(p) {
				return true
			}
		}
	}
	return false
}

// openUnmatched opens the regular file at path for resumeOutsideGlobs,
// unless it is tracked already (a source, a held copy).
func (a *Agent) openUnmatched(in *input, path string) *newFile {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil
	}
	key, ok := keyOf(fi)
	if !ok || a.sources[key] != nil || a.heldKey(key) {
		f.Close()
		return nil
	}
	return &newFile{in: in, path: path, f: f, key: key, size: fi.Size(), probe: newProbe(f, fi.Size(), a.fpBuf)}
}

// inputForEntry returns the input an entry's file is read by: of the
// entry's topic, the first whose globs cover the entry's directory, or
// else the first of the topic; nil when no input has the topic any more.
func (a *Agent) inputForEntry(e *posEntry) *input {
	var first *input
	dir := filepath.Dir(e.Path)
	for _, in := range a.inputs {
		if in.Topic != e.Topic {
			continue
		}
		if first == nil {
			first = in
		}
		for _, pat := range in.Paths {
			if ok, _ := filepath.Match(filepath.Dir(pat), dir); ok {
				return in
			}
		}
	}
	return first
}
