package agent

// Bytes the agent cannot ship are logged with the file name and counted in
// GivenUpBytes, never lost silently: files waiting for max_open_files that
// go before they are opened, and batches in flight of a truncated file
// that are lost with their session.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// waitingRig is an agent limited to one open file, with f0.log open and
// shipped and w.log (20 lines) waiting for max_open_files.
type waitingRig struct {
	dir   string
	fa    *fakeAgg
	ag    *runningAgent
	log   *testLog
	open  *logWriter // f0.log
	wait  *logWriter // w.log
	wsize int64      // w.log's size
}

func newWaitingRig(t *testing.T, glob string, noWatch bool) *waitingRig {
	t.Helper()
	r := &waitingRig{dir: t.TempDir(), fa: newFakeAgg(t)}
	opts := testOpts(t, r.dir, r.fa.addr())
	opts.MaxOpenFiles = 1
	opts.NoWatch = noWatch
	opts.Logger, r.log = newTestLog(t)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(r.dir, glob)}}}
	r.open = newLogWriter(t, filepath.Join(r.dir, "f0.log"), "f0") // sorts first: opened
	r.open.write(10)
	r.wait = newLogWriter(t, filepath.Join(r.dir, "w.log"), "w")
	r.wait.write(20)
	fi, err := os.Stat(r.wait.path)
	if err != nil {
		t.Fatal(err)
	}
	r.wsize = fi.Size()
	r.ag = startAgent(t, opts)
	waitFor(t, "f0 shipped, w waiting", func() bool {
		st := r.ag.Stats()
		return r.fa.records() == 10 && st.FilesWaiting == 1 && r.ag.Idle()
	})
	return r
}

// makeRoom rotates f0.log away (out of any glob): once it is drained and
// closed, the waiting file can be opened.
func (r *waitingRig) makeRoom(t *testing.T) {
	t.Helper()
	if err := os.Rename(r.open.path, filepath.Join(r.dir, "f0.done")); err != nil {
		t.Fatal(err)
	}
	r.open.write(5) // through its descriptor, as a late writer does
}

// A file waiting for max_open_files that is deleted, or rotated out of the
// globs where no file event follows it, before the agent could open it:
// its bytes are given up, logged with its name and size, and counted.
func TestWaitingFileGoneBeforeOpenedIsGivenUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noWatch bool
		gone    func(r *waitingRig) error
	}{
		{"deleted", false, func(r *waitingRig) error { return os.Remove(r.wait.path) }},
		{"rotated out of the globs, polling only", true, func(r *waitingRig) error {
			return os.Rename(r.wait.path, filepath.Join(r.dir, "w.old"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newWaitingRig(t, "*.log", tc.noWatch)
			if err := tc.gone(r); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "bytes given up", func() bool { return r.ag.Stats().GivenUpBytes > 0 })
			if st := r.ag.Stats(); st.GivenUpBytes != r.wsize || st.FilesWaiting != 0 {
				t.Errorf("GivenUpBytes %d, FilesWaiting %d; want %d, 0", st.GivenUpBytes, st.FilesWaiting, r.wsize)
			}
			l := r.log.String()
			if !strings.Contains(l, "went before it was opened: giving up its bytes") ||
				!strings.Contains(l, "w.log") || !strings.Contains(l, fmt.Sprintf("bytes=%d", r.wsize)) {
				t.Error("giving up not logged with the file's name and size")
			}
		})
	}
}

// A file waiting for max_open_files renamed before the agent could open
// it is found again, under its new name, by its (device, inode) and birth
// time: to a name the globs still match (by the next scan), or out of the
// globs (by the rename's file event, as an open file would be). Once there
// is room it ships, every line exactly once, and nothing is given up.
func TestWaitingFileRenamedIsFoundAgain(t *testing.T) {
	for _, tc := range []struct{ name, glob, to string }{
		{"to a matched name", "*.log*", "w.log.1"},
		{"out of the globs, file events", "*.log", "w.old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newWaitingRig(t, tc.glob, false)
			to := filepath.Join(r.dir, tc.to)
			if err := os.Rename(r.wait.path, to); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "rename seen", func() bool {
				return strings.Contains(r.log.String(), "file waiting for max_open_files renamed")
			})
			// Closing f0 takes at least two more scans (reap's grace):
			// time for a waiting file wrongly taken for gone to be given up.
			r.makeRoom(t)
			waitFor(t, "all shipped", func() bool { return r.fa.records() == 35 && r.ag.Idle() })
			checkStreams(t, r.fa.snapshot(), map[string]int{"f0": 15, "w": 20}, nil)
			if st := r.ag.Stats(); st.GivenUpBytes != 0 || st.FilesWaiting != 0 {
				t.Errorf("GivenUpBytes %d, FilesWaiting %d: want 0, 0", st.GivenUpBytes, st.FilesWaiting)
			}
			for _, s := range r.fa.snapshot() {
				if s.topic == "app" && strings.HasPrefix(s.records[0], "w ") && s.path != to {
					t.Errorf("w shipped under %s, want %s", s.path, to)
				}
			}
		})
	}
}

// holdingAgg is an aggregator whose first connection stores nothing and
// acks nothing until the test says (ackFirst: ack it all Appended; cut:
// close it); later connections ack every batch Appended. It stores
// nothing: the test only looks at the agent's counts.
type holdingAgg struct {
	*scriptedAgg
	mu       sync.Mutex
	sessions int
	ackFirst chan struct{}
	cut      chan struct{}
}

func newHoldingAgg(t *testing.T) *holdingAgg {
	h := &holdingAgg{ackFirst: make(chan struct{}), cut: make(chan struct{})}
	h.scriptedAgg = newScriptedAgg(t, func(nc net.Conn) {
		c, ok := acceptSession(nc, "holding")
		if !ok {
			return
		}
		h.mu.Lock()
		h.sessions++
		first := h.sessions == 1
		h.mu.Unlock()
		var wmu sync.Mutex
		ackAll := func(seqs []uint64) bool {
			wmu.Lock()
			defer wmu.Unlock()
			for _, seq := range seqs {
				b := (&wire.ProduceAck{Seq: seq, Status: wire.AckAppended}).Encode(nil)
				if c.WriteFrame(wire.TypeProduceAck, b) != nil {
					return false
				}
			}
			return c.Flush() == nil
		}
		var held []uint64
		release := make(chan struct{})
		if first {
			go func() {
				select {
				case <-h.cut:
					nc.Close()
				case <-h.ackFirst:
					close(release)
				}
			}()
		}
		for {
			t, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			if t != wire.TypeProduce {
				continue
			}
			seq, _, err := wire.DecodeProduce(p)
			if err != nil {
				return
			}
			if !first {
				if !ackAll([]uint64{seq}) {
					return
				}
				continue
			}
			select {
			case <-release:
				if !ackAll(append(held, seq)) {
					return
				}
				held = nil
			default:
				held = append(held, seq)
			}
		}
	})
	return h
}

// A file truncated while batches of it are in flight, with no copy of it
// found: batches lost with their session (never acknowledged, so maybe
// never stored) are given up with the ghost, logged with the file name;
// batches acknowledged after the truncation were stored and are not.
func TestTruncatedInFlightBytesLostWithSessionAreGivenUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		lost bool
	}{
		{"session lost", true},
		{"acknowledged after the truncation", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			h := newHoldingAgg(t)
			opts := testOpts(t, dir, h.addr())
			var tl *testLog
			opts.Logger, tl = newTestLog(t)
			opts.Compression = batch.None
			opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
			w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
			w.write(200)
			fi, err := os.Stat(w.path)
			if err != nil {
				t.Fatal(err)
			}
			ag := startAgent(t, opts)
			waitFor(t, "the file in flight", func() bool { return ag.Stats().InflightBytes == fi.Size() })
			if err := os.Truncate(w.path, 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "truncation seen", func() bool { return ag.Stats().InflightBytes == 0 })
			if tc.lost {
				close(h.cut)
			} else {
				close(h.ackFirst)
			}
			w.write(5) // new content, no copy: a new source
			waitFor(t, "ghost expired", func() bool {
				for _, e := range readPositions(t, opts.StateDir) {
					if e.Dev == 0 && e.Inode == 0 {
						return false
					}
				}
				return ag.Idle() && ag.Stats().AckedBytes > 0
			})
			want := int64(0)
			if tc.lost {
				want = fi.Size()
			}
			if got := ag.Stats().GivenUpBytes; got != want {
				t.Errorf("GivenUpBytes %d, want %d", got, want)
			}
			if logged := strings.Contains(tl.String(), "no copy of it was found: giving them up") && strings.Contains(tl.String(), "a.log"); logged != tc.lost {
				t.Errorf("giving up logged with the file name: %v, want %v", logged, tc.lost)
			}
		})
	}
}
