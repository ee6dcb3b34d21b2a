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
//     positions file (lines written after that are not shipped; if the
//     input comes back, the file is read again from its beginning, and
//     the aggregator drops as duplicates what it already has);
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
	a.scan(time.Now())
	return nil
}
