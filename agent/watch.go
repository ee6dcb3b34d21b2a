package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// File events. The watcher watches the directories of the files the agent
// tracks and the literal directories of the input globs, and turns events
// into hints for the loop: a written file is checked at once instead of at
// its next poll, and a file created, renamed or removed triggers a scan at
// once instead of at the next ScanInterval. Nothing depends on an event
// arriving: polling and the periodic scan stay, as the fallback where
// events are not available (inotify limits, network file systems) and as
// the safety net for events lost in an overflow.
//
// One goroutine (run) reads the fsnotify channels and records the hints
// under mu; it wakes the loop through kick, which holds at most one signal,
// so a burst of events costs the loop one wake-up. The loop goroutine owns
// the set of watched directories (sync) and takes the hints (take).
// move is a rename seen by the watcher.
type move struct{ from, to string }

// maxMoves bounds the renames kept between two takes; past it they are
// dropped (and a scan is due): polling is the safety net.
const maxMoves = 4096

type watcher struct {
	w    *fsnotify.Watcher
	log  *slog.Logger
	kick chan struct{}
	done chan struct{}

	mu      sync.Mutex
	written map[string]struct{}
	moves   []move // renames within watched directories, in order
	rescan  bool

	dirs map[string]bool // watched; owned by the loop goroutine
}

// newWatcher starts a watcher, or returns an error when the platform or
// its limits give none (the agent then polls only).
func newWatcher(log *slog.Logger) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{
		w: fw, log: log, kick: make(chan struct{}, 1), done: make(chan struct{}),
		written: make(map[string]struct{}), dirs: make(map[string]bool),
	}
	go w.run()
	return w, nil
}

func (w *watcher) run() {
	defer close(w.done)
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			w.mu.Lock()
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				w.rescan = true
				if from, ok := renamedFrom(ev); ok && len(w.moves) < maxMoves {
					w.moves = append(w.moves, move{from, ev.Name})
				}
			} else if ev.Has(fsnotify.Write) {
				w.written[ev.Name] = struct{}{}
			}
			w.mu.Unlock()
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: scan, and let polling do the rest.
			w.log.Warn("file events lost; scanning and polling cover them", "err", err)
			w.mu.Lock()
			w.rescan = true
			w.mu.Unlock()
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// take returns the paths written and the renames seen since the last
// call, and whether a scan is due. Loop goroutine.
func (w *watcher) take() (written map[string]struct{}, moves []move, rescan bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.written) > 0 {
		written = w.written
		w.written = make(map[string]struct{})
	}
	moves, w.moves = w.moves, nil
	rescan, w.rescan = w.rescan, false
	return written, moves, rescan
}

// renamedFrom returns the old name of a Create event that is the new name
// of a rename within the watched directories. fsnotify pairs the two
// halves of a rename by the inotify cookie but does not export the old
// name; Event.String shows it as `CREATE "new" ← "old"`, which is what is
// read here (and checked against the event's own name and op).
func renamedFrom(ev fsnotify.Event) (string, bool) {
	if !ev.Has(fsnotify.Create) {
		return "", false
	}
	prefix := fmt.Sprintf("%-13s %q ← ", ev.Op.String(), ev.Name)
	rest, ok := strings.CutPrefix(ev.String(), prefix)
	if !ok {
		return "", false
	}
	from, err := strconv.Unquote(rest)
	return from, err == nil && from != ""
}

// sync makes the watched directories the given ones. A directory that
// cannot be watched (gone, or over the inotify limit) is left to polling;
// the limit is logged once. Loop goroutine.
func (w *watcher) sync(want map[string]bool) {
	for d := range w.dirs {
		if !want[d] {
			w.w.Remove(d)
			delete(w.dirs, d)
		}
	}
	for d := range want {
		if w.dirs[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				w.log.Warn("cannot watch directory; polling it", "dir", d, "err", err)
			}
			continue
		}
		w.dirs[d] = true
	}
}

// close stops the watcher and waits for its goroutine.
func (w *watcher) close() {
	w.w.Close()
	<-w.done
}

// watchDirs is the set of directories to watch: the literal directory of
// every glob (where new files appear) and the directory of every tracked
// file.
func (a *Agent) watchDirs() map[string]bool {
	dirs := make(map[string]bool)
	for _, in := range a.inputs {
		for _, p := range in.Paths {
			if hasDoubleStar(p) {
				dirs[literalPrefix(p)] = true
			} else {
				dirs[literalPrefix(filepath.Dir(p))] = true
			}
		}
	}
	for _, s := range a.order {
		dirs[filepath.Dir(s.path)] = true
	}
	for _, h := range a.held {
		dirs[filepath.Dir(h.nf.path)] = true
	}
	return dirs
}
