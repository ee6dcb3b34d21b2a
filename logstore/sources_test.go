package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"logship/logstore/batch"
)

// Source state: the table, its snapshots and their recovery.

// srcBatch builds an unstamped batch of one source: agent, source id and
// the byte range [from, to), with about size bytes of incompressible
// payload.
func srcBatch(t testing.TB, agent string, source uint64, from, to int64, size int) []byte {
	t.Helper()
	bl, err := batch.NewBuilder(batch.None)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	rng := rand.New(rand.NewPCG(source, uint64(from)))
	rec := make([]byte, max(size-160, 1))
	for i := range rec {
		rec[i] = 'a' + byte(rng.IntN(26))
	}
	bl.Add(from, rec)
	b, err := bl.Build(nil, batch.Meta{Agent: agent, Topic: testTopic, Path: "/var/log/x.log", SourceID: source, RangeStart: from, RangeEnd: to})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sourceLoad appends n batches of about size bytes spread over a few
// agents and sources (each source's ranges follow on), advancing clk (if
// not nil) by step before each, and returns what was stored. The first
// sources stop early: with a TTL, they are pruned later.
func sourceLoad(t testing.TB, p *Partition, clk *manualClock, step time.Duration, n, size int) []stored {
	t.Helper()
	ends := map[SourceKey]int64{}
	var out []stored
	for i := range n {
		k := SourceKey{Agent: fmt.Sprintf("host-%d", i%3), Source: uint64(i % 7)}
		if i > n/3 && k.Source < 2 {
			k.Source += 100 // sources 0 and 1 of every agent go idle after a third
		}
		if clk != nil {
			clk.Add(step)
		}
		from := ends[k]
		ends[k] = from + int64(size)
		out = append(out, appendBatch(t, p, srcBatch(t, k.Agent, k.Source, from, ends[k], size)))
	}
	return out
}

// scannedSources is the source table computed from the partition's
// batches (the last batch of a source wins), without pruning.
func scannedSources(t testing.TB, p *Partition) map[SourceKey]SourceState {
	t.Helper()
	out := map[SourceKey]SourceState{}
	if err := p.Scan(func(h *batch.Header) error {
		out[SourceKey{h.Agent, h.SourceID}] = SourceState{RangeEnd: h.RangeEnd, LastOffset: h.NextOffset() - 1, LastAppendTime: h.AppendTime}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkSources(t testing.TB, p *Partition, want map[SourceKey]SourceState) {
	t.Helper()
	got := p.Sources()
	if !maps.Equal(got, want) {
		var diff []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				diff = append(diff, fmt.Sprintf("%v: got %+v (%v), want %+v", k, g, ok, v))
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				diff = append(diff, fmt.Sprintf("%v: got %+v, want none", k, v))
			}
		}
		slices.Sort(diff)
		t.Fatalf("Sources differ (%d entries, want %d):\n%s", len(got), len(want), strings.Join(diff, "\n"))
	}
}

// snapshotFiles returns the snapshot offsets in a partition directory of fs.
func snapshotFiles(t testing.TB, fs *memFS, dir string) []int64 {
	t.Helper()
	ents, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range ents {
		if off, ok := parseSnapshotName(e.Name); ok {
			out = append(out, off)
		}
	}
	return out
}

func TestSourcesTrackAppends(t *testing.T) {
	s := openFS(t, "/store", testOpts(4096), newMemFS())
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	if len(p.Sources()) != 0 {
		t.Fatal("new partition has sources")
	}
	sourceLoad(t, p, nil, 0, 60, 300)
	want := scannedSources(t, p)
	if len(want) != 3*9 {
		t.Fatalf("%d sources", len(want))
	}
	checkSources(t, p, want)
	// The copy is the caller's.
	for k := range p.Sources() {
		m := p.Sources()
		delete(m, k)
		break
	}
	checkSources(t, p, want)
}

func TestSnapshotRoundTrip(t *testing.T) {
	tbl := newSourceTable()
	tbl.maxTime = 1234
	tbl.m[SourceKey{"b", 2}] = SourceState{RangeEnd: 10, LastOffset: 4, LastAppendTime: 1000}
	tbl.m[SourceKey{"a", 9}] = SourceState{RangeEnd: 0, LastOffset: 0, LastAppendTime: 1234}
	tbl.m[SourceKey{"", 1}] = SourceState{RangeEnd: 7, LastOffset: 9, LastAppendTime: -5}
	data := encodeSnapshot(10, tbl)
	got, err := decodeSnapshot(data, 10)
	if err != nil || !maps.Equal(got.m, tbl.m) || got.maxTime != tbl.maxTime {
		t.Fatalf("%v %+v", err, got)
	}
	if _, err := decodeSnapshot(data, 11); !errors.Is(err, errSnapshot) {
		t.Fatalf("wrong offset accepted: %v", err)
	}
	empty := encodeSnapshot(0, newSourceTable())
	if got, err := decodeSnapshot(empty, 0); err != nil || len(got.m) != 0 || got.maxTime != noSourceTime {
		t.Fatalf("empty: %v %+v", err, got)
	}
	if !bytes.Equal(encodeSnapshot(10, got0(t, data)), data) {
		t.Fatal("not canonical")
	}
}

func got0(t *testing.T, data []byte) *sourceTable {
	tbl, err := decodeSnapshot(data, 10)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// FuzzSnapshot: the snapshot decoder never panics, refuses with
// errSnapshot, and what it accepts encodes back to an equal table.
func FuzzSnapshot(f *testing.F) {
	tbl := newSourceTable()
	for i := range 5 {
		tbl.apply(&batch.Header{Agent: fmt.Sprint("agent-", i%2), SourceID: uint64(i), RangeEnd: int64(i * 100), BaseOffset: int64(i), Count: 1, AppendTime: int64(1000 + i)})
	}
	good := encodeSnapshot(10, tbl)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(encodeSnapshot(10, newSourceTable()))
	f.Add([]byte("LSSN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, err := decodeSnapshot(data, 10)
		if err != nil {
			if !errors.Is(err, errSnapshot) {
				t.Fatalf("error %v does not wrap errSnapshot", err)
			}
			return
		}
		again, err := decodeSnapshot(encodeSnapshot(10, tbl), 10)
		if err != nil || !maps.Equal(again.m, tbl.m) || again.maxTime != tbl.maxTime {
			t.Fatalf("accepted snapshot does not encode back: %v", err)
		}
	})
}

// snapshotStore writes a partition of several segments with sources that
// go idle, on a manual clock, with a TTL that prunes some of them at
// rolls. It returns the file system, the options, the batches and the
// source table, either after a clean Close or as a power cut would leave it
// (every batch was acknowledged, so all of them survive).
func snapshotStore(t *testing.T, clean bool) (*memFS, Options, []stored, map[SourceKey]SourceState) {
	t.Helper()
	clk := newClock()
	opts := testOpts(8 << 10)
	opts.Now, opts.SourceStateTTL, opts.SegmentMaxAge = clk.Now, 40*time.Minute, 1000*time.Hour
	fs := newMemFS()
	s := openFS(t, "/store", opts, fs)
	p := partitionT(t, s, testTopic, 3)
	want := sourceLoad(t, p, clk, time.Second, 120, 400)
	// Then only one source, an hour later, until a roll prunes the others:
	// the last roll, so that a replay from the snapshot before it must
	// prune exactly as the roll did.
	clk.Add(time.Hour)
	for i := 0; len(p.Sources()) > 1 || i == 0; i++ {
		want = append(want, appendBatch(t, p, srcBatch(t, "late", 1, int64(i*400), int64(i*400+400), 400)))
	}
	srcs := p.Sources()
	if n := len(scannedSources(t, p)); len(srcs) != 1 || n < 10 {
		t.Fatalf("%d sources left, %d in the log", len(srcs), n)
	}
	if len(p.segs) < 4 {
		t.Fatalf("%d segments", len(p.segs))
	}
	img := fs
	if !clean {
		img = fs.crash(nil)
	}
	closeT(t, s)
	return img, opts, want, srcs
}

// TestSnapshotDamage truncates the newest snapshot at every byte offset
// and flips every byte of it, after a clean Close (the snapshot at the
// end: the fallback replays the last segment) and after a power cut (the
// snapshot of the last roll: the fallback replays the segment before it,
// and its pruning). Reopening gives exactly the same source table, logs
// the damage, and the next append works.
func TestSnapshotDamage(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			img, opts, want, srcs := snapshotStore(t, clean)
			pd := "/store/" + testTopic + "-3"
			snaps := snapshotFiles(t, img, pd)
			// Removals of old snapshots are not fsynced: a power cut may
			// bring one back.
			if len(snaps) < snapshotsKept {
				t.Fatalf("snapshots %v", snaps)
			}
			newest := filepath.Join(pd, snapshotName(snaps[len(snaps)-1]))
			if clean != (snaps[len(snaps)-1] == want[len(want)-1].next()) {
				t.Fatalf("newest snapshot at %d, end %d", snaps[len(snaps)-1], want[len(want)-1].next())
			}
			data, err := img.ReadFile(newest)
			if err != nil {
				t.Fatal(err)
			}
			var cases [][]byte
			for n := range len(data) {
				cases = append(cases, data[:n])
			}
			for at := range data {
				d := bytes.Clone(data)
				d[at] ^= 0x55
				cases = append(cases, d)
			}
			for i, d := range cases {
				fs := img.crash(nil)
				if err := fs.Remove(newest); err != nil {
					t.Fatal(err)
				}
				writeMem(t, fs, newest, d)
				var logs logBuf
				o := opts
				o.Logger = logs.logger()
				s, err := open("/store", o, fs)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				p := s.Lookup(testTopic, 3)
				checkSources(t, p, srcs)
				if p.End() != want[len(want)-1].next() || !strings.Contains(logs.String(), "damaged source snapshot") {
					t.Fatalf("case %d: End %d; logs: %s", i, p.End(), logs.String())
				}
				if _, err := fs.ReadFile(newest); err == nil {
					t.Fatalf("case %d: damaged snapshot kept", i)
				}
				more := appendBatch(t, p, srcBatch(t, "new", 1, 0, 10, 100))
				if st := p.Sources()[SourceKey{"new", 1}]; st.LastOffset != more.next()-1 || st.RangeEnd != 10 {
					t.Fatalf("case %d: next append: %+v", i, st)
				}
				closeT(t, s)
			}
		})
	}
}

// TestSourceStateTTL: a source idle for longer than the TTL, in the log's
// own time, is dropped at the next roll, never between rolls, and a table
// rebuilt from the whole log (every snapshot lost) is the same.
func TestSourceStateTTL(t *testing.T) {
	clk := newClock()
	opts := testOpts(2048)
	opts.Now, opts.SourceStateTTL, opts.SegmentMaxAge = clk.Now, time.Hour, 1000*time.Hour
	fs := newMemFS()
	s := openFS(t, "/store", opts, fs)
	p := partitionT(t, s, testTopic, 3)
	old := SourceKey{"old", 1}
	appendBatch(t, p, srcBatch(t, old.Agent, old.Source, 0, 10, 100))
	clk.Add(2 * time.Hour)
	segs := func() int { p.rw.RLock(); defer p.rw.RUnlock(); return len(p.segs) }
	n := segs()
	for i := 0; segs() == n; i++ {
		appendBatch(t, p, srcBatch(t, "new", 1, int64(i*10), int64(i*10+10), 100))
		if segs() == n {
			if _, ok := p.Sources()[old]; !ok {
				t.Fatal("idle source dropped before a roll")
			}
		}
	}
	if _, ok := p.Sources()[old]; ok {
		t.Fatal("idle source kept after a roll")
	}
	// Wall time does not count: a long pause then a roll keeps "new".
	clk.Add(100 * time.Hour)
	for n := segs(); segs() == n; {
		appendBatch(t, p, srcBatch(t, "other", 2, 0, 10, 2000)) // rolls before it is written
	}
	srcs := p.Sources()
	if _, ok := srcs[SourceKey{"new", 1}]; !ok {
		t.Fatalf("source pruned by wall time: %v", srcs)
	}
	closeT(t, s)
	pd := "/store/" + testTopic + "-3"
	for _, off := range snapshotFiles(t, fs, pd) {
		if err := fs.Remove(filepath.Join(pd, snapshotName(off))); err != nil {
			t.Fatal(err)
		}
	}
	var logs logBuf
	opts.Logger = logs.logger()
	s = openFS(t, "/store", opts, fs)
	defer closeT(t, s)
	checkSources(t, s.Lookup(testTopic, 3), srcs)
	if !strings.Contains(logs.String(), "no usable source snapshot") {
		t.Fatalf("full rebuild not logged: %s", logs.String())
	}
}

// TestSnapshotsKept: a partition keeps the newest snapshotsKept snapshots,
// removes those below Start once retention deleted their segments, and
// at Open those above the end (as a crash that cut the batches they
// describe would leave them).
func TestSnapshotsKept(t *testing.T) {
	fs := newMemFS()
	opts := testOpts(2048)
	opts.RetentionBytes = 1 // only when EnforceRetention is called: the check interval is a minute
	s := openFS(t, "/store", opts, fs)
	p := partitionT(t, s, testTopic, 3)
	pd := "/store/" + testTopic + "-3"
	appendMany(t, p, 0, 60)
	snaps := snapshotFiles(t, fs, pd)
	if len(snaps) != snapshotsKept || snaps[len(snaps)-1] != p.segs[len(p.segs)-1].base {
		t.Fatalf("snapshots %v", snaps)
	}
	srcs := p.Sources()
	if err := s.EnforceRetention(fixedNow()); err != nil {
		t.Fatal(err)
	}
	start, end := p.Start(), p.End()
	if start != p.segs[len(p.segs)-1].base {
		t.Fatalf("retention kept from %d", start)
	}
	closeT(t, s)
	beyond := filepath.Join(pd, snapshotName(end+100))
	writeMem(t, fs, beyond, encodeSnapshot(end+100, newSourceTable()))
	s = openFS(t, "/store", opts, fs)
	defer closeT(t, s)
	checkSources(t, s.Lookup(testTopic, 3), srcs)
	if got := snapshotFiles(t, fs, pd); !slices.Equal(got, []int64{start, end}) {
		t.Fatalf("snapshots %v, want [%d %d]", got, start, end)
	}
}

// TestSnapshotWriteFails: a snapshot that cannot be written is logged and
// costs nothing else: appends and rolls go on, and the next Open rebuilds
// the same table from the log.
func TestSnapshotWriteFails(t *testing.T) {
	mem := newMemFS()
	hfs := &hookFS{fileSystem: mem}
	hfs.setOnWrite(func(name string) error {
		if strings.HasSuffix(name, snapshotSuffix+tmpSuffix) {
			return errors.New("injected: disk full")
		}
		return nil
	})
	var logs logBuf
	opts := testOpts(2048)
	opts.Logger = logs.logger()
	s := openFS(t, "/store", opts, hfs)
	p := partitionT(t, s, testTopic, 3)
	want := sourceLoad(t, p, nil, 0, 40, 300)
	srcs := p.Sources()
	closeT(t, s)
	if n := strings.Count(logs.String(), "cannot write source snapshot"); n < 3 {
		t.Fatalf("%d failures logged: %s", n, logs.String())
	}
	if snaps := snapshotFiles(t, mem, "/store/"+testTopic+"-3"); len(snaps) != 0 {
		t.Fatalf("snapshots %v", snaps)
	}
	s = openFS(t, "/store", testOpts(2048), mem)
	defer closeT(t, s)
	p = s.Lookup(testTopic, 3)
	checkSources(t, p, srcs)
	checkLog(t, p, want)
}

func TestRecoveryOptions(t *testing.T) {
	err := Options{CheckpointInterval: -1, SourceStateTTL: -time.Hour}.Validate()
	for _, w := range []string{"CheckpointInterval -1ns", "SourceStateTTL -1h0m0s"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v; want it to say %q", err, w)
		}
	}
	o := Options{}.withDefaults()
	if o.CheckpointInterval != DefaultCheckpointInterval || o.SourceStateTTL != DefaultSourceStateTTL {
		t.Fatalf("defaults %v %v", o.CheckpointInterval, o.SourceStateTTL)
	}
}
