package agent

import (
	"bytes"
	"io"
	"os"
	"slices"
	"time"
)

// scan expands every input's globs, starts sources for new files, follows
// renames of tracked ones, and closes rotated files that are done. It runs
// in the loop goroutine, right after start, every ScanInterval, and when a
// file event says that files appeared or went.
func (a *Agent) scan(now time.Time) {
	a.scanGen++
	a.lastScan = now
	// Truncations first: a new file of this scan may be the copy that a
	// copytruncate left of one.
	if !a.firstScan {
		for _, s := range a.order {
			a.checkTruncated(s, now)
		}
	}
	var news []*newFile
	a.waiting = 0
	for _, in := range a.inputs {
		for _, pat := range in.Paths {
			for _, p := range expand(pat) {
				if excluded(in.Exclude, p) {
					continue
				}
				if nf := a.consider(in, p, news, now); nf != nil {
					news = append(news, nf)
				}
			}
		}
	}
	news = a.followWaiting(news, now)
	if a.firstScan {
		a.startSources(news, now)
		rest, lost := a.restored.rest()
		for _, e := range a.resumeUnmatched(rest, lost, now) {
			a.log.Warn("file of the positions file not found: forgetting it; unread lines it had, if any, are not shipped",
				"topic", e.Topic, "source", e.Path, "pos", e.Pos)
			a.posDirty = true
		}
	} else {
		a.startNew(news, now)
	}
	a.reviewHeld(now)
	a.reap(now)
	a.expireGhosts(now)
	a.firstScan = false
	if a.waiting > 0 && !a.warnedLimit {
		a.log.Warn("max_open_files reached: files wait until others are closed", "max_open_files", a.opts.MaxOpenFiles, "waiting", a.waiting)
	}
	a.warnedLimit = a.waiting > 0
	a.openFiles.Store(int64(len(a.sources) + len(a.held)))
	a.filesWaiting.Store(int64(a.waiting))
	a.publishSources()
	if a.watch != nil {
		a.watch.sync(a.watchDirs())
	}
}

// checkTruncated restarts s as a new source if its file was truncated
// (see intact).
func (a *Agent) checkTruncated(s *source, now time.Time) {
	if s.f == nil || s.stopping {
		return
	}
	a.intact(s, now)
}

// intact reports whether s's file still holds what the tailer knows of
// it: it is not shorter than the read position, the bytes before the read
// position are those the guard covers, and its first bytes are those the
// fingerprint covers (whatever the file's length: a truncation followed by
// growth past the read position between two looks changes them). If not,
// the change is handled (truncated, startChanged) and intact reports
// false. A stat error is no evidence of a change: intact reports true.
func (a *Agent) intact(s *source, now time.Time) bool {
	fi, err := s.f.Stat()
	if err != nil {
		return true
	}
	switch size := fi.Size(); {
	case size < s.readPos:
		a.truncated(s, size, now, "size below read position")
		s.stats.size.Store(size)
	case !a.guardHolds(s):
		a.truncated(s, size, now, "the bytes before the read position changed")
		s.stats.size.Store(size)
	case s.hasID && !a.sameStart(s, size):
		a.startChanged(s, size, now)
		s.stats.size.Store(size)
	default:
		return true
	}
	return false
}

// guardHolds reports whether the file still holds the bytes of the guard
// at the read position (see source.guard); true when there is none.
func (a *Agent) guardHolds(s *source) bool {
	g := s.guardLen
	if g == 0 || s.guardPos != s.readPos {
		return true
	}
	fp, err := fingerprintAt(s.f, s.guardPos-int64(g), g, a.fpBuf)
	return err == nil && fp == s.guardFP
}

// seedGuard takes the guard at s's read position afresh: the tail
// fingerprint when it is at the read position (its bytes were checked when
// it was taken, or when the source was resumed), else the bytes the file
// has there now. Callers make sure the file is intact first, or have just
// checked those bytes (resume).
func (a *Agent) seedGuard(s *source) {
	s.guardPos, s.guardLen = s.readPos, 0
	switch {
	case s.readPos == 0:
	case s.tailPos == s.readPos && s.tailLen > 0:
		s.guardLen, s.guardFP = s.tailLen, s.tailFP
	default:
		g := int(min(s.readPos, guardMax))
		if fp, err := fingerprintAt(s.f, s.readPos-int64(g), g, a.fpBuf); err == nil {
			s.guardLen, s.guardFP = g, fp
		} // else the file is shorter: the size check catches it
	}
}

// moveReadPos moves s's read position to pos other than by reading: back
// to the acknowledged position when a session ends, to the aggregator's
// stored end (Resync, skip ahead), to the acknowledged position when the
// file changes topic. The file is first checked where the guard stands
// (intact; a truncation found then is handled, and moveReadPos reports
// false), then the guard is taken again at pos: without it, a truncation
// followed by growth past pos before the next read would go unnoticed.
func (a *Agent) moveReadPos(s *source, pos int64, now time.Time) bool {
	if pos == s.readPos {
		return true
	}
	if !a.intact(s, now) {
		return false
	}
	s.readPos = pos
	s.partialSize = 0
	a.seedGuard(s)
	return true
}

// newFile is a file opened by this scan that no source tracks yet.
type newFile struct {
	in    *input
	path  string
	f     *os.File
	key   fileKey
	size  int64
	probe *probe // for matching against the positions file
}

// consider handles one path matched by in's globs. A path whose (dev,
// inode) is tracked is the same source (maybe renamed): nothing is read
// again. Otherwise the file is new to this run and is returned, open, for
// startSources (unless news, the new files of this scan, has it already).
func (a *Agent) consider(in *input, path string, news []*newFile, now time.Time) *newFile {
	fi, err := os.Stat(path) // follows symbolic links: a link is read as its target
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	key, ok := keyOf(fi)
	if !ok {
		return nil
	}
	if s := a.sources[key]; s != nil {
		if s.seen == a.scanGen {
			return nil // matched by an earlier pattern or input: first wins
		}
		s.seen = a.scanGen
		if s.path != path {
			a.log.Info("file renamed", s.attrs("to", path)...)
			s.path = path
			a.posDirty = true
		}
		// A reload may have changed its input's rule, removed its input,
		// or given its path to an input of another topic.
		switch {
		case in.Topic == s.topic:
			s.in, s.switchTo, s.stopping = in, nil, false
		case s.switchTo != in:
			a.log.Info("file now belongs to an input of another topic: switching once its batches in flight are acknowledged", s.attrs("to_topic", in.Topic)...)
			s.switchTo, s.stopping = in, false
		}
		return nil
	}
	if a.heldKey(key) {
		return nil
	}
	// An empty file is not tracked until it has bytes, unless the
	// positions file has an entry for its (dev, inode): it was emptied while
	// the agent was stopped, and must not be taken for a new file when it
	// grows again (it would get its old id back).
	if fi.Size() == 0 && !a.hasEntry(key) {
		return nil
	}
	for _, nf := range news {
		if nf.key == key {
			return nil
		}
	}
	if in.IgnoreOlder > 0 && now.Sub(fi.ModTime()) > in.IgnoreOlder && !a.hasEntry(key) && a.waitingFiles[key] == nil {
		return nil // picked up when it is written again (one waiting already passed this check)
	}
	if len(a.sources)+len(a.held)+len(news) >= a.opts.MaxOpenFiles {
		a.noteWaiting(in, key, path, fi)
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		a.log.Warn("open failed", "topic", in.Topic, "source", path, "err", err)
		return nil
	}
	fi, err = f.Stat()
	if k2, ok := keyOf(fi); err != nil || !ok || k2 != key || (fi.Size() == 0 && !a.hasEntry(key)) {
		f.Close() // replaced between stat and open: next scan
		return nil
	}
	delete(a.waitingFiles, key)
	return &newFile{in: in, path: path, f: f, key: key, size: fi.Size(), probe: newProbe(f, fi.Size(), a.fpBuf)}
}

// startSources starts a source for each new file. Entries of the positions
// file are claimed in two passes (see restoredSet): first each file is
// matched against the entry of its own (dev, inode), then the rest against
// the entries of other files, by fingerprint and tail (a copy). So a new
// file that shares its first bytes with a rotated one cannot take the
// rotated one's entry.
func (a *Agent) startSources(news []*newFile, now time.Time) {
	claimed := make([]*posEntry, len(news))
	lost := make([]*posEntry, len(news))
	for i, nf := range news {
		claimed[i], lost[i] = a.restored.claimOwn(nf.key, nf.probe)
	}
	for i, nf := range news {
		if claimed[i] == nil && lost[i] == nil {
			claimed[i] = a.restored.claimCopy(nf.key, nf.probe, a.ownFileHolds)
		}
	}
	for i, nf := range news {
		a.startSource(nf, claimed[i], lost[i], now)
	}
}

// startSource starts the source of one new file, resuming the positions
// file's entry e when there is one. A lost entry is one of the file's own
// whose content the file no longer has (truncated while the agent was
// stopped): the file is a new source, salted so that new content that
// begins like the old one still gets a new id.
func (a *Agent) startSource(nf *newFile, e, lost *posEntry, now time.Time) {
	in, size := nf.in, nf.size
	s := &source{key: nf.key, topic: in.Topic, path: nf.path, f: nf.f, in: in, seen: a.scanGen, reapSize: -1, tailPos: -1, nextCheck: now}
	switch {
	case e != nil:
		s.salt = uint64(e.Salt)
		if e.FPLen > 0 {
			s.hasID, s.id, s.fp, s.fpLen = true, uint64(e.ID), uint64(e.FP), e.FPLen
		}
		s.readPos, s.acked = e.Pos, e.Pos
		// What the aggregator may hold past Pos (a copytruncate's ghost,
		// an entry a reload released) is sent again before the agent may
		// move to another aggregator (moveSafe); no more than the file
		// has (a copy ends where logrotate copied it).
		s.sentHigh = min(e.high, size)
		s.shipped = e.FPLen > 0 // batches may have been sent under its id before
		if e.hasTail {
			// The file holds these bytes (probe.holds): they are the
			// guard until the first read (seedGuard below).
			s.tailPos, s.tailFP, s.tailLen = e.Pos, uint64(e.TailFP), e.TailLen
		}
		a.log.Info("resuming file", s.attrs("pos", e.Pos, "size", size, "id", hex64(s.id))...)
	case lost != nil:
		s.salt = uint64(now.UnixNano()) | 1
		a.markUnsaved(s)
		a.log.Info("file truncated while the agent was stopped or its input removed (or replaced: it no longer holds the bytes before its position): starting a new source at offset 0",
			s.attrs("pos", lost.Pos, "size", size)...)
	case size == 0:
		nf.f.Close() // only files with an entry are tracked while empty
		return
	case a.firstScan && in.StartAt == "end":
		s.readPos = lastLineEnd(nf.f, size)
		s.acked = s.readPos
		a.log.Info("new file: starting at its end", s.attrs("pos", s.readPos)...)
	default:
		a.log.Info("new file", s.attrs("size", size)...)
		a.markUnsaved(s)
	}
	if !s.hasID && size > 0 {
		if err := a.identify(s, size); err != nil {
			a.log.Warn("fingerprint failed", s.attrs("err", err)...)
			nf.f.Close()
			return
		}
	}
	// A resumed source, or one started at the end, is checked for a
	// truncation before its first read too.
	a.seedGuard(s)
	s.stats.size.Store(size)
	s.publish()
	a.sources[nf.key] = s
	a.order = append(a.order, s)
	a.posDirty = true
}

// reap closes sources that no glob matched in this scan (rotated away or
// deleted) once they are drained (nothing left to read), fully
// acknowledged, and did not grow since the previous scan: a writer that
// still holds the rotated file gets one scan interval of grace. One not
// drained DrainTimeout after it was first unmatched is given up: the bytes
// not acknowledged are logged and counted. A source of an input removed by
// a reload is closed once its batches in flight are acknowledged.
func (a *Agent) reap(now time.Time) {
	var gone bool
	for _, s := range a.order {
		if s.seen == a.scanGen && !s.stopping {
			s.reapSize = -1
			s.unmatchedSince = time.Time{}
			continue
		}
		if s.unmatchedSince.IsZero() {
			s.unmatchedSince = now
			// Renamed away from the globs: follow its name, for logs,
			// batches and metrics.
			if p, ok := currentPath(s.f); ok && p != s.path {
				a.log.Info("file renamed", s.attrs("to", p)...)
				s.path = p
				a.posDirty = true
			}
		}
		if s.stopping {
			if s.inflight == 0 {
				a.log.Info("input removed: file closed", s.attrs("acked", s.acked)...)
				a.release(s)
				a.closeSource(s)
				gone = true
			}
			continue
		}
		fi, err := s.f.Stat()
		if err != nil {
			continue
		}
		size := fi.Size()
		s.stats.size.Store(size)
		done := s.inflight == 0 && s.acked == s.readPos && size == s.readPos && size == s.reapSize
		s.reapSize = size
		switch {
		case done:
			a.log.Info("closing rotated or deleted file: drained and acknowledged", s.attrs("size", size)...)
		case now.Sub(s.unmatchedSince) >= a.opts.DrainTimeout:
			lost := max(size-s.acked, 0)
			a.log.Warn("rotated or deleted file not drained within drain_timeout: giving up its unshipped bytes",
				s.attrs("bytes", lost, "acked", s.acked, "size", size, "drain_timeout", a.opts.DrainTimeout)...)
			a.dropFlights(s)
			s.gen++
			s.stats.up.Add(lost)
			a.givenUp.Add(lost)
		default:
			continue
		}
		a.noteClosed(s, size, now)
		a.closeSource(s)
		gone = true
	}
	if gone {
		a.order = slices.DeleteFunc(a.order, func(s *source) bool { return s.f == nil })
	}
}

// lastLineEnd returns the offset just past the last newline in the last
// 64 KiB of f (size bytes long): where to start reading "at the end"
// without shipping the tail of a line. With no newline there, it returns 0
// for a small file (one incomplete line: ship it once complete) and size
// otherwise.
func lastLineEnd(f *os.File, size int64) int64 {
	const look = 64 << 10
	off := max(size-look, 0)
	b := make([]byte, size-off)
	n, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return size
	}
	if i := bytes.LastIndexByte(b[:n], '\n'); i >= 0 {
		return off + int64(i) + 1
	}
	if off == 0 {
		return 0
	}
	return size
}

// waitingFile is a file found beyond MaxOpenFiles, not opened yet: it is
// remembered by (device, inode) and birth time, so that a rename to a name
// the globs still match finds it again (the same file, under its new
// name), a rename out of the globs that a file event shows is followed
// like that of an open file, and one deleted (or rotated away unseen)
// before it could be opened is not lost silently (followWaiting).
type waitingFile struct {
	in    *input
	path  string
	size  int64
	mtime time.Time
	born  birth  // zero: no birth time
	seen  uint64 // the last scan (scanGen) that found it
	// unmatchedSince is when a scan first found it at a name no glob
	// matches (zero: matched): it waits up to DrainTimeout from then.
	unmatchedSince time.Time
}

// noteWaiting records a file that consider could not open for
// MaxOpenFiles: new, or found again (maybe under another name). A file on
// the (device, inode) of a waiting one that has another birth time is a
// new file on a reused inode: the waiting one was deleted, and its bytes
// are given up. Loop goroutine.
func (a *Agent) noteWaiting(in *input, key fileKey, path string, fi os.FileInfo) {
	if a.waitingFiles == nil {
		a.waitingFiles = make(map[fileKey]*waitingFile)
	}
	w := a.waitingFiles[key]
	if w != nil && (fi.Size() < w.size || !fi.ModTime().Equal(w.mtime)) {
		// Changed since the last look: the same file written to, or a new
		// file on the reused inode of a deleted one. The birth time tells
		// them apart; without one, a file that shrank is taken for
		// another (or truncated: its bytes are gone as well).
		b, ok := birthOf(path)
		if ok && w.born != (birth{}) && b != w.born || (!ok || w.born == birth{}) && fi.Size() < w.size {
			a.giveUpWaiting(w, "deleted (its inode now holds another file) or truncated before it was opened")
			w = nil
		}
	}
	if w == nil {
		w = &waitingFile{in: in, path: path}
		w.born, _ = birthOf(path)
		a.waitingFiles[key] = w
	} else if w.path != path {
		a.log.Info("file waiting for max_open_files renamed", "topic", in.Topic, "source", w.path, "to", path)
		w.path = path
	}
	w.in, w.size, w.mtime = in, fi.Size(), fi.ModTime()
	if w.seen != a.scanGen {
		w.seen = a.scanGen
		a.waiting++
	}
}

// birthOf returns the birth time of the file at path (see birthTime).
func birthOf(path string) (birth, bool) {
	f, err := os.Open(path)
	if err != nil {
		return birth{}, false
	}
	defer f.Close()
	return birthTime(f)
}

// followWaiting looks after the waiting files that this scan's globs did
// not find (it runs after them), and returns news with those it opened:
//
//   - Still at their last name, which no glob matches any more (renamed
//     out of the globs; file events followed the rename): considered
//     again, as a rotated file, opened once there is room, for up to
//     DrainTimeout after a scan first found it unmatched. Past that, its
//     bytes are given up.
//   - No longer at their last name (deleted, or renamed where no event
//     followed it), for two scans in a row (one of grace: a file renamed
//     while the globs were expanded may be missed once): given up.
//   - Emptied while waiting: logged (its bytes may live on in a copy,
//     copytruncate's) and forgotten. Of an input a reload removed:
//     forgotten.
//
// A file given up is logged with its name and size, and its bytes
// counted in GivenUpBytes. Loop goroutine.
func (a *Agent) followWaiting(news []*newFile, now time.Time) []*newFile {
	for key, w := range a.waitingFiles {
		if a.sources[key] != nil || a.heldKey(key) {
			delete(a.waitingFiles, key) // opened
			continue
		}
		if w.seen == a.scanGen {
			w.unmatchedSince = time.Time{}
			continue
		}
		if !slices.ContainsFunc(a.inputs, func(in *input) bool {
			return in.Topic == w.in.Topic && slices.Equal(in.Paths, w.in.Paths)
		}) {
			a.log.Info("file waiting for max_open_files: its input was removed: forgotten", "topic", w.in.Topic, "source", w.path)
			delete(a.waitingFiles, key)
			continue
		}
		fi, err := os.Stat(w.path)
		switch {
		case err != nil || !sameKey(fi, key):
			if w.seen+1 < a.scanGen {
				delete(a.waitingFiles, key)
				a.giveUpWaiting(w, "deleted or rotated away before it was opened")
			}
		case fi.Size() == 0:
			delete(a.waitingFiles, key)
			if w.size > 0 {
				a.log.Warn("file waiting for max_open_files was emptied before it was opened: its bytes are not shipped, unless a copy of them is (copytruncate)",
					"topic", w.in.Topic, "source", w.path, "bytes", w.size)
			}
		default:
			if w.unmatchedSince.IsZero() {
				w.unmatchedSince = now
			}
			if now.Sub(w.unmatchedSince) >= a.opts.DrainTimeout {
				delete(a.waitingFiles, key)
				a.giveUpWaiting(w, "rotated away, and not opened within drain_timeout")
				continue
			}
			if nf := a.consider(w.in, w.path, news, now); nf != nil {
				a.log.Info("file rotated away while waiting for max_open_files: opened", "topic", w.in.Topic, "source", w.path)
				news = append(news, nf)
			}
		}
	}
	return news
}

// giveUpWaiting logs and counts the bytes of a waiting file that went
// before it could be opened.
func (a *Agent) giveUpWaiting(w *waitingFile, why string) {
	a.log.Warn("file waiting for max_open_files went before it was opened: giving up its bytes",
		"topic", w.in.Topic, "source", w.path, "reason", why, "bytes", w.size, "max_open_files", a.opts.MaxOpenFiles)
	a.givenUp.Add(w.size)
}

// sameKey reports whether fi is the file of key.
func sameKey(fi os.FileInfo, key fileKey) bool {
	k, ok := keyOf(fi)
	return ok && k == key
}
