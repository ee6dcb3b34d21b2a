package logstore

import (
	"sync/atomic"
	"testing"

	"logship/logstore/batch"
)

// removeHookFS calls onRemove before each Remove.
type removeHookFS struct {
	fileSystem
	onRemove atomic.Pointer[func(string)]
}

func (r *removeHookFS) Remove(name string) error {
	if fn := r.onRemove.Load(); fn != nil {
		(*fn)(name)
	}
	return r.fileSystem.Remove(name)
}

// TestRetentionMarksSegmentsGoneBeforeRemoving: a Scan works from its own
// copy of the segment list. Retention must mark every segment it deletes
// as gone before it lets readers in again and removes files, so that such
// a Scan skips them; marking them one by one while removing let a Scan
// open a file being removed and fail with ENOENT (found by review).
func TestRetentionMarksSegmentsGoneBeforeRemoving(t *testing.T) {
	dir := t.TempDir()
	fsys := &removeHookFS{fileSystem: osFS{}}
	opts := testOpts(1024)
	s := openFS(t, dir, opts, fsys)
	appendMany(t, partitionT(t, s, "t", 3), 0, 60)
	closeT(t, s)
	opts.RetentionBytes = 1
	s = openFS(t, dir, opts, fsys)
	defer s.Close()
	p := s.Lookup("t", 3)
	p.rw.RLock()
	dead := p.segs[:len(p.segs)-1]
	p.rw.RUnlock()
	if len(dead) < 2 {
		t.Fatalf("setup: %d sealed segments", len(dead))
	}
	var notGone atomic.Int32
	hook := func(string) {
		for _, seg := range dead {
			p.cache.mu.Lock()
			if !seg.gone {
				notGone.Add(1)
			}
			p.cache.mu.Unlock()
		}
	}
	fsys.onRemove.Store(&hook)

	// Retention runs while a Scan is inside the first segment.
	var retErr error
	ran := false
	err := p.Scan(func(*batch.Header) error {
		if !ran {
			ran = true
			retErr = s.EnforceRetention(fixedNow())
		}
		return nil
	})
	if retErr != nil {
		t.Fatal(retErr)
	}
	if n := notGone.Load(); n != 0 {
		t.Fatalf("%d times a file was removed while a deleted segment was not marked gone", n)
	}
	if err != nil {
		t.Fatalf("Scan across retention: %v", err)
	}
	if p.Start() != p.segs[len(p.segs)-1].base {
		t.Fatalf("start %d", p.Start())
	}
}
