package logstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"logship/logstore/batch"
)

// groupBatch is a batch for the AppendGroup tests, with its header.
type groupBatch struct {
	b []byte
	h batch.Header
}

func groupBatches(t *testing.T, first, n int) []groupBatch {
	t.Helper()
	out := make([]groupBatch, n)
	for i := range out {
		seq := first + i
		out[i].b = makeBatch(t, testTopic, seq, 1+seq%4, 20+(seq*53)%400)
		h, err := batch.Parse(out[i].b)
		if err != nil {
			t.Fatal(err)
		}
		out[i].h = h
	}
	return out
}

// AppendGroup leaves the log byte for byte as Append called for each batch
// in turn does, with the same results: across rolls (small segments, some
// in the middle of a group), with batches the check turns down, and with
// its vectored writes on the real file system.
func TestAppendGroupIsAppendInTurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	opts := testOpts(4 << 10)
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := openT(t, dirA, opts), openT(t, dirB, opts)
	pa, pb := partitionT(t, a, testTopic, 3), partitionT(t, b, testTopic, 3)
	write := func(seq int) bool { return seq%5 != 2 }

	const n = 300
	one, group := groupBatches(t, 0, n), groupBatches(t, 0, n)
	var want, got []Appended
	for i := range one {
		seq := i
		res, err := pa.Append(one[i].b, &one[i].h, func(*batch.Header) (bool, error) { return write(seq), nil })
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res)
	}
	for i := 0; i < n; {
		k := min(n-i, 1+rng.IntN(12))
		bs := make([][]byte, k)
		hs := make([]*batch.Header, k)
		for j := range k {
			bs[j], hs[j] = group[i+j].b, &group[i+j].h
		}
		res := make([]Appended, k)
		first := i
		done, err := pb.AppendGroup(bs, hs, func(j int, h *batch.Header) (bool, error) {
			if h != hs[j] {
				t.Fatalf("check %d got another batch's header", j)
			}
			return write(first + j), nil
		}, res)
		if err != nil || done != k {
			t.Fatalf("group of %d at %d: %d done, %v", k, i, done, err)
		}
		got = append(got, res...)
		i += k
	}
	if !slices.Equal(got, want) {
		t.Errorf("results differ:\ngroup %v\nturn  %v", got, want)
	}
	for i := range one {
		if one[i].h != group[i].h || !bytes.Equal(one[i].b, group[i].b) {
			t.Fatalf("batch %d stamped differently: %+v, in turn %+v", i, group[i].h, one[i].h)
		}
	}
	last := want[len(want)-1].Next
	if err := errors.Join(pa.WaitDurable(last), pb.WaitDurable(last)); err != nil {
		t.Fatal(err)
	}
	if pa.End() != pb.End() || len(segmentFiles(t, partDir(dirB))) < 10 {
		t.Fatalf("ends %d and %d, %d segments: want equal ends and many rolls", pa.End(), pb.End(), len(segmentFiles(t, partDir(dirB))))
	}
	closeT(t, a)
	closeT(t, b)
	entries, err := os.ReadDir(partDir(dirA))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		x, errA := os.ReadFile(filepath.Join(partDir(dirA), e.Name()))
		y, errB := os.ReadFile(filepath.Join(partDir(dirB), e.Name()))
		if errA != nil || errB != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs (%d and %d bytes; %v, %v)", e.Name(), len(x), len(y), errA, errB)
		}
	}
}

// A write of a group that fails leaves nothing of its run in the log: the
// batches the check turned down before it are done (not written), the
// first batch of the run is the one that failed, and the next append gets
// the offset it would have had. A check's error stops the group after the
// batches before it are written.
func TestAppendGroupFailures(t *testing.T) {
	hfs := &hookFS{fileSystem: newMemFS()}
	s := openFS(t, "/log", testOpts(1<<20), hfs)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	before := appendMany(t, p, 0, 3)

	gb := groupBatches(t, 10, 6)
	bs, hs := make([][]byte, 6), make([]*batch.Header, 6)
	for i := range gb {
		bs[i], hs[i] = gb[i].b, &gb[i].h
	}
	res := make([]Appended, 6)
	writes := 0
	hfs.setOnWrite(func(name string) error {
		if filepath.Ext(name) != logSuffix {
			return nil
		}
		if writes++; writes == 3 { // the run's third batch: half of it lands
			return errors.New("disk full")
		}
		return nil
	})
	n, err := p.AppendGroup(bs, hs, func(i int, _ *batch.Header) (bool, error) { return i >= 2, nil }, res)
	hfs.setOnWrite(nil)
	if err == nil || n != 2 {
		t.Fatalf("AppendGroup with a failing write: %d done, %v; want 2 (the run's first) and the error", n, err)
	}
	end := before[len(before)-1].next()
	for i := range 2 {
		if res[i] != (Appended{Next: end}) {
			t.Errorf("res[%d] = %+v, want not written, next %d", i, res[i], end)
		}
	}
	if p.End() != end {
		t.Fatalf("end %d after the failed write, want %d", p.End(), end)
	}
	checkLog(t, p, before)

	// The same batches again, with a check that fails at the fourth: the
	// three before it are written.
	for i := range gb {
		gb[i] = groupBatches(t, 10+i, 1)[0]
		bs[i], hs[i] = gb[i].b, &gb[i].h
	}
	boom := errors.New("check says no")
	n, err = p.AppendGroup(bs, hs, func(i int, _ *batch.Header) (bool, error) {
		if i == 3 {
			return false, boom
		}
		return true, nil
	}, res)
	if !errors.Is(err, boom) || n != 3 {
		t.Fatalf("AppendGroup with a failing check: %d done, %v; want 3 and its error", n, err)
	}
	want := before
	for i := range 3 {
		if !res[i].Written || res[i].BaseOffset != end {
			t.Fatalf("res[%d] = %+v, want written at %d", i, res[i], end)
		}
		want = append(want, stored{base: end, count: hs[i].Count, data: bytes.Clone(bs[i])})
		end = res[i].Next
	}
	if err := p.WaitDurable(end); err != nil {
		t.Fatal(err)
	}
	checkLog(t, p, want)
}

// writevAt writes every buffer in order, also past IOV_MAX buffers.
func TestWritevAtManyBuffers(t *testing.T) {
	f, err := osFS{}.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var all []byte
	for i := range 3000 {
		b := bytes.Repeat([]byte{byte(i)}, 1+i%7)
		bufs = append(bufs, b)
		all = append(all, b...)
	}
	kept := slices.Clone(bufs)
	if err := writeAtv(f, bufs, 5); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(all))
	if _, err := f.ReadAt(got, 5); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("read back %v: differs", err)
	}
	for i := range bufs {
		if &bufs[i][0] != &kept[i][0] || len(bufs[i]) != len(kept[i]) {
			t.Fatalf("writeAtv changed the caller's buffer %d", i)
		}
	}
}
