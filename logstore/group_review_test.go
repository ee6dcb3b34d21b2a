package logstore

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"logship/logstore/batch"
)

// Tests of AppendGroup, found in review.

// A segment rolls by age when the batch about to be appended finds its
// first batch SegmentMaxAge old. With Append in turn, the first batch of an
// empty segment sets the segment's age origin as soon as it is written, so
// a later batch that comes an hour later (the clock is read after the
// check, in both paths) rolls. So must a later batch of the same group,
// though the first one is still in the group's unwritten run.
func TestAppendGroupRollsByAgeAsAppendInTurn(t *testing.T) {
	type side struct {
		dir string
		now atomic.Int64 // unix ms
		s   *Store
		p   *Partition
	}
	mk := func() *side {
		sd := &side{dir: t.TempDir()}
		sd.now.Store(fixedNow().UnixMilli())
		opts := testOpts(1 << 20)
		opts.SegmentMaxAge = time.Hour
		opts.Now = func() time.Time { return time.UnixMilli(sd.now.Load()) }
		sd.s = openT(t, sd.dir, opts)
		sd.p = partitionT(t, sd.s, testTopic, 3)
		return sd
	}
	// The check of batch 1 runs an hour after batch 0 was appended: the
	// clock moves while the appender waits (here: in the check itself, which
	// runs before the clock is read in both paths).
	a, b := mk(), mk()
	one, group := groupBatches(t, 0, 2), groupBatches(t, 0, 2)

	var want []Appended
	for i := range one {
		res, err := a.p.Append(one[i].b, &one[i].h, func(*batch.Header) (bool, error) {
			if i == 1 {
				a.now.Add(time.Hour.Milliseconds())
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res)
	}

	res := make([]Appended, 2)
	n, err := b.p.AppendGroup([][]byte{group[0].b, group[1].b}, []*batch.Header{&group[0].h, &group[1].h},
		func(i int, _ *batch.Header) (bool, error) {
			if i == 1 {
				b.now.Add(time.Hour.Milliseconds())
			}
			return true, nil
		}, res)
	if err != nil || n != 2 {
		t.Fatalf("AppendGroup: %d, %v", n, err)
	}
	if res[0] != want[0] || res[1] != want[1] {
		t.Errorf("results %+v, in turn %+v", res, want)
	}
	segA, segB := segmentFiles(t, partDir(a.dir)), segmentFiles(t, partDir(b.dir))
	if len(segA) != len(segB) {
		t.Errorf("Append in turn left %d segments %v, AppendGroup %d %v: the group did not roll by age before batch 1",
			len(segA), names(segA), len(segB), names(segB))
	}
	closeT(t, a.s)
	closeT(t, b.s)
}

func names(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	return out
}

// Append's result on a failed write: "Next: written end of the log after
// this call: pass it to WaitDurable": the unchanged written end, not the
// end the batch would have had (which WaitDurable refuses).
func TestAppendNextAfterFailedWrite(t *testing.T) {
	hfs := &hookFS{fileSystem: newMemFS()}
	s := openFS(t, "/log", testOpts(1<<20), hfs)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	before := appendMany(t, p, 0, 3)
	end := before[len(before)-1].next()

	hfs.setOnWrite(func(name string) error {
		if filepath.Ext(name) == logSuffix {
			return errors.New("disk full")
		}
		return nil
	})
	b := makeBatch(t, testTopic, 50, 3, 100)
	h, err := batch.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Append(b, &h, nil)
	hfs.setOnWrite(nil)
	if err == nil {
		t.Fatal("Append with a failing write: no error")
	}
	if res.Written || res.Next != end {
		t.Errorf("Append after a failed write returned %+v; want not written, Next %d (the written end)", res, end)
	}
	if err := p.WaitDurable(res.Next); err != nil {
		t.Errorf("WaitDurable(res.Next) after the failed write: %v", err)
	}
}
