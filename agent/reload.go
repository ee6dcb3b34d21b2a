package agent

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Reloading the inputs of a running agent (doc.go, "Reload").

type reloadReq struct {
	inputs []Input
	done   chan error
}

// Reload replaces the agent's inputs while it runs. Inputs that are
// checked invalid are refused with every problem, and the running ones
// stay. Otherwise the new inputs are scanned at once:
//
//   - files of an added input are new files (read from their beginning,
//     or from their position if the positions file still has one);
//   - the files of a kept input (same topic and paths) keep their
//     sources and positions, and take the input's new settings (exclude,
//     multiline rule) from their next read on;
//   - the files of a removed input are no longer read: each is closed once
//     its batches in flight are acknowledged, and its entry leaves the
//     positions file but is kept aside (release): if an input matches the
//     file again, it resumes its source where it was, under its id, so
//     the lines written meanwhile are shipped and nothing twice;
//   - a file now matched first by an input of another topic goes on under
//     that topic from its acknowledged position, once nothing of it is in
//     flight.
//
// Options other than the inputs are not reloaded. Safe to call from any
// goroutine while Run runs.
func (a *Agent) Reload(inputs []Input) error {
	if errs := checkInputs(inputs, a.opts.MaxLineBytes); len(errs) > 0 {
		return fmt.Errorf("agent: invalid inputs: %w", errors.Join(errs...))
	}
	if !a.loopUp.Load() {
		return errors.New("agent: reload: not running")
	}
	r := reloadReq{inputs: copyInputs(inputs), done: make(chan error, 1)}
	select {
	case a.reloadCh <- r:
		return <-r.done
	case <-a.loopDone:
		return errors.New("agent: reload: stopped")
	}
}

// reload applies a Reload in the loop goroutine.
func (a *Agent) reload(ins []Input) error {
	next := compileInputs(ins, a.opts.MaxLineBytes)
	kept := func(in *input) bool {
		return slices.ContainsFunc(next, func(n *input) bool {
			return n.Topic == in.Topic && slices.Equal(n.Paths, in.Paths)
		})
	}
	removed := 0
	for _, s := range a.order {
		if !kept(s.in) {
			s.stopping = true // unless the scan below finds it matched again
			removed++
		}
	}
	a.log.Info("inputs reloaded", "inputs", len(next), "was", len(a.inputs), "files_of_changed_inputs", removed)
	a.inputs = next
	a.opts.Inputs = ins
	// Files held as possible copies belong to the old inputs: let the
	// scan find them again under the new ones (or not at all).
	a.closeHeld()
	a.scan(time.Now())
	return nil
}

// release keeps aside the positions entry of s, a file about to be
// closed because a reload removed its input, so that the file resumes it
// if an input matches it again: read again from 0, a file first seen with
// fewer than 1024 bytes, or truncated once, or without a birth time,
// would get another id, and the aggregator would store its lines twice.
// The entries are kept in memory only (the positions file drops them, as
// before), at most MaxOpenFiles of them.
func (a *Agent) release(s *source) {
	if a.released == nil {
		a.released = make(map[fileKey]posEntry)
	}
	if len(a.released) >= a.opts.MaxOpenFiles {
		for k := range a.released {
			delete(a.released, k) // any one: a bound, not a policy
			break
		}
	}
	e := posEntry{ID: hex64(s.id), Topic: s.topic, Path: s.path, Dev: s.key.dev, Inode: s.key.ino, Salt: hex64(s.salt), hasTail: true}
	if s.hasID {
		e.FP, e.FPLen = hex64(s.fp), s.fpLen
		a.updateTail(s)
		if s.tailPos >= 0 {
			e.Pos, e.TailFP, e.TailLen = s.tailPos, hex64(s.tailFP), s.tailLen
		}
	}
	e.high = max(s.sentHigh, s.acked)
	a.released[s.key] = e
}

// claimReleased matches a new file against the released entry of its own
// (device, inode), by the rule of a restart (restoredSet.claimOwn): it
// returns the entry to resume, or the one the file has lost (it no longer
// holds the entry's content: a new, salted source from 0).
func (a *Agent) claimReleased(nf *newFile) (resume, lost *posEntry) {
	e, ok := a.released[nf.key]
	if !ok {
		return nil, nil
	}
	delete(a.released, nf.key)
	if e.FPLen == 0 || nf.probe.holds(&e) {
		return &e, nil
	}
	return nil, &e
}

// hasEntry reports whether the positions file or a removed input left an
// entry for the (device, inode) key, which the file resumes.
func (a *Agent) hasEntry(key fileKey) bool {
	_, ok := a.released[key]
	return ok || a.restored.hasKey(key)
}
