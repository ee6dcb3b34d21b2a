package agent

import (
	"cmp"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
func (r *restoredSet) claimCopy(key fileKey, p *probe, ownHolds func(*posEntry) bool) *posEntry {
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
			if !e.hasTail || (best != nil && rank(e) <= rank(best)) || !p.holds(e) || ownHolds(e) {
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

// rest returns the unclaimed entries, the lost ones apart, and empties
// the set.
func (r *restoredSet) rest() (out, lost []*posEntry) {
	seen := make(map[*posEntry]bool)
	add := func(e *posEntry) {
		if seen[e] {
			return
		}
		seen[e] = true
		if r.lost[e] {
			lost = append(lost, e)
		} else {
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
	return out, lost
}

// resumeUnmatched is the last pass of the first scan, for the entries no
// file the globs match has claimed (rest): an entry's file may still be
// there under a name no glob matches, rotated away before the agent read
// it to its end. Only the entry's own file counts, found by its (dev,
// inode) at the entry's path or elsewhere in the same directory, and only
// if it still holds the entry's content (probe.holds):
//   - renamed since the stop (found under another name, not excluded), it
//     was rotated while the agent was stopped;
//   - at the entry's path, only if the entry says it was being drained
//     when the agent stopped (draining: rotated away before): a file whose
//     name the config covered then and no longer does was left by a change
//     of the config, and is read no further, as a reload does.
//
// A resumed file is drained as a running agent drains a rotated one: read
// to its end, acknowledged, closed (reap), or given up after DrainTimeout.
// When max_open_files leaves no room for it, its unread bytes are given up
// (logged, counted). It returns the entries it neither resumed nor gave up,
// and logs why for those it found and left.
//
// A lost entry (its own file truncated or rewritten while the agent was
// stopped: it started again as a new source) may have left its content in
// a copy (copytruncate) that no glob matches: a file in the same directory
// that holds the entry's content is resumed and drained too. Without one,
// the lines it had past the position, if any, are not shipped: that is
// logged.
func (a *Agent) resumeUnmatched(rest, lost []*posEntry, now time.Time) (left []*posEntry) {
	byPath := func(x, y *posEntry) int { return cmp.Compare(x.Path, y.Path) }
	slices.SortFunc(rest, byPath)
	slices.SortFunc(lost, byPath)
	for _, e := range rest {
		if !a.resumeOutsideGlobs(e, now) {
			left = append(left, e)
		}
	}
	for _, e := range lost {
		if !a.resumeCopy(e, now) {
			a.log.Warn("file truncated while the agent was stopped, and no copy of it found (copytruncate): lines it had past its position, if any, are not shipped",
				"topic", e.Topic, "source", e.Path, "pos", e.Pos)
		}
	}
	return left
}

// resumeCopy resumes a lost entry from a copy of its file that no glob
// matches, in the same directory (resumeUnmatched), and reports whether it
// found one. Content alone names the copy, so it must be the only file
// there that holds the entry's content: an older rotation that shares a
// header with it (the entry's position inside the header) holds it too,
// and taking that one would ship it again. With several, or when
// max_open_files leaves no room, the copy is not read, and that is logged
// (the bytes counted as given up when the copy is known).
func (a *Agent) resumeCopy(e *posEntry, now time.Time) bool {
	in := a.inputForEntry(e)
	if in == nil || e.FPLen == 0 || !e.hasTail {
		return false
	}
	if a.keepForWaiting(e) {
		return true
	}
	dir := filepath.Dir(e.Path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	type found struct {
		path string
		key  fileKey
		size int64
	}
	var copies []found
	for _, de := range ents {
		path := filepath.Join(dir, de.Name())
		if !de.Type().IsRegular() || excluded(in.Exclude, path) {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.Size() < e.Pos {
			continue
		}
		key, ok := keyOf(fi)
		if !ok || a.sources[key] != nil || a.heldKey(key) || a.waitingFiles[key] != nil {
			continue // tracked: not a copy left behind
		}
		if holdsAt(path, key, e, a.fpBuf) {
			copies = append(copies, found{path, key, fi.Size()})
		}
	}
	switch {
	case len(copies) == 0:
		return false
	case len(copies) > 1:
		paths := make([]string, len(copies))
		for i, c := range copies {
			paths[i] = c.path
		}
		a.log.Warn("file truncated while the agent was stopped, and several files hold its content (a copy, and rotations that begin the same): none is read; lines past its position, if any, are not shipped",
			"topic", e.Topic, "source", e.Path, "pos", e.Pos, "candidates", paths)
		return true
	case len(a.sources)+len(a.held) >= a.opts.MaxOpenFiles:
		a.noRoomToDrain(e, copies[0].path, copies[0].size)
		return true
	}
	return a.resumeFile(in, copies[0].path, copies[0].key, e, now)
}

// holdsAt reports whether the regular file at path, still of key, holds
// e's content (probe.holds). buf is the agent's fingerprint buffer.
func holdsAt(path string, key fileKey, e *posEntry, buf []byte) bool {
	f, fi := openKey(path, key)
	if f == nil {
		return false
	}
	defer f.Close()
	return newProbe(f, fi.Size(), buf).holds(e)
}

// openKey opens the file at path, which was a regular file of key when it
// was looked at just before (so opening it does not block, as a FIFO's
// open would), if it still is; nil if not.
func openKey(path string, key fileKey) (*os.File, os.FileInfo) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || !sameKey(fi, key) {
		f.Close()
		return nil, nil
	}
	return f, fi
}

// noRoomToDrain gives up the unread bytes of a file that resumes e (e's
// own, rotated away, or a copy of it) when max_open_files leaves no room
// to drain it: logged and counted, never silently.
func (a *Agent) noRoomToDrain(e *posEntry, path string, size int64) {
	unread := max(size-e.Pos, 0)
	a.log.Warn("file not read to its end before the restart (rotated away, or a copy), and max_open_files leaves no room to drain it: giving up its unread bytes",
		"topic", e.Topic, "source", path, "of", e.Path, "pos", e.Pos, "bytes", unread, "max_open_files", a.opts.MaxOpenFiles)
	a.givenUp.Add(unread)
	a.posDirty = true
}

// ownFileHolds reports whether e's own file, found by its (dev, inode) at
// e's path or elsewhere in its directory, still holds e's content: a file
// rotated away while the agent was stopped. Then no other file may take e
// as its copy by content (claimCopy): a new file that begins like it (a
// shared header) is new, and the own file resumes it (resumeUnmatched).
func (a *Agent) ownFileHolds(e *posEntry) bool {
	if e.Dev == 0 && e.Inode == 0 {
		return false
	}
	path, fi := findOwnFile(e)
	return fi != nil && holdsAt(path, fileKey{e.Dev, e.Inode}, e, a.fpBuf)
}

// keepForWaiting hands e on, when its own file waits for room under
// max_open_files (found by the first scan, matched by a glob), to that
// file for when it is opened (as the entries a reload releases: claimed
// by startNew), and reports whether it did.
func (a *Agent) keepForWaiting(e *posEntry) bool {
	key := fileKey{e.Dev, e.Inode}
	if a.waitingFiles[key] == nil {
		return false
	}
	if a.released == nil {
		a.released = make(map[fileKey]posEntry)
	}
	a.released[key] = *e
	return true
}

// resumeOutsideGlobs resumes e from its own file under a name no glob
// matches, if it finds it there and may (resumeUnmatched). It reports
// whether it dealt with e (resumed, gave it up, or left it with a log line
// of its own).
func (a *Agent) resumeOutsideGlobs(e *posEntry, now time.Time) bool {
	in := a.inputForEntry(e)
	if in == nil || e.FPLen == 0 || (e.Dev == 0 && e.Inode == 0) {
		return false
	}
	if a.keepForWaiting(e) {
		return true
	}
	path, fi := findOwnFile(e)
	switch {
	case fi == nil:
		return false
	case path == e.Path && e.Draining != nil && !*e.Draining:
		a.log.Info("file no longer matched by the config: not read further", "topic", e.Topic, "source", path, "pos", e.Pos, "size", fi.Size())
		a.posDirty = true
		return true
	case path != e.Path && excluded(in.Exclude, path):
		return false
	case len(a.sources)+len(a.held) >= a.opts.MaxOpenFiles:
		a.noRoomToDrain(e, path, fi.Size())
		return true
	}
	own := fileKey{e.Dev, e.Inode}
	if a.sources[own] != nil || a.heldKey(own) {
		return false
	}
	return a.resumeFile(in, path, own, e, now)
}

// resumeFile opens the regular file at path, whose key was key when it
// was looked at, and resumes e from it if it still is that file and holds
// e's content; the source is left unmatched, for reap to drain and close.
func (a *Agent) resumeFile(in *input, path string, key fileKey, e *posEntry, now time.Time) bool {
	f, fi := openKey(path, key)
	if f == nil {
		return false
	}
	nf := &newFile{in: in, path: path, f: f, key: key, size: fi.Size(), probe: newProbe(f, fi.Size(), a.fpBuf)}
	if !nf.probe.holds(e) {
		f.Close()
		return false
	}
	a.startSource(nf, e, nil, now)
	if s := a.sources[nf.key]; s != nil {
		s.seen = a.scanGen - 1 // no glob matched it: reap drains and closes it
		a.log.Info("resuming a file no glob matches (rotated away or copied before it was read to its end): draining it",
			s.attrs("pos", e.Pos, "size", nf.size)...)
	}
	return true
}

// findOwnFile returns the path and info of the regular file with e's
// (dev, inode): at e's path, or else elsewhere in its directory; nil when
// there is none.
func findOwnFile(e *posEntry) (string, os.FileInfo) {
	own := fileKey{e.Dev, e.Inode}
	if fi, err := os.Lstat(e.Path); err == nil && fi.Mode().IsRegular() && sameKey(fi, own) {
		return e.Path, fi
	}
	dir := filepath.Dir(e.Path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil
	}
	for _, de := range ents {
		if !de.Type().IsRegular() {
			continue
		}
		if fi, err := de.Info(); err == nil && sameKey(fi, own) {
			return filepath.Join(dir, de.Name()), fi
		}
	}
	return "", nil
}

// inputForEntry returns the input an entry's file is read by: of the
// entry's topic, the first that covers the entry's path, else the first
// whose globs' fixed directory holds it, else the first of the topic; nil
// when no input has the topic any more.
func (a *Agent) inputForEntry(e *posEntry) *input {
	var first, near *input
	for _, in := range a.inputs {
		if in.Topic != e.Topic {
			continue
		}
		if first == nil {
			first = in
		}
		for _, pat := range in.Paths {
			if matchPath(pat, e.Path) {
				return in
			}
			if root := literalPrefix(pat); near == nil && strings.HasPrefix(e.Path, root) {
				near = in
			}
		}
	}
	return cmp.Or(near, first)
}

// covers reports whether in's globs match path and its excludes do not.
func (in *input) covers(path string) bool {
	if excluded(in.Exclude, path) {
		return false
	}
	for _, pat := range in.Paths {
		if matchPath(pat, path) {
			return true
		}
	}
	return false
}

// draining reports whether s is a file the config no longer matches, read
// to its end before it is closed: a scan found no glob matching it, or its
// name changed since (a rename the loop followed) to one its input does
// not cover. Not one whose input a reload removed: that one is read no
// further.
func (s *source) draining() bool {
	if s.stopping || s.in == nil {
		return false
	}
	return !s.unmatchedSince.IsZero() || !s.in.covers(s.path)
}
