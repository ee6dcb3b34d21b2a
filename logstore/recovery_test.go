package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"logship/logstore/batch"
)

// Recovery with checkpoints: what Open reads after a clean and an unclean
// shutdown, and what it does with damage (doc.go, "Recovery").

// readCountFS counts the bytes read from each file, and the largest
// single read of each.
type readCountFS struct {
	fileSystem
	mu      sync.Mutex
	bytes   map[string]int64
	largest map[string]int
}

func newReadCountFS(fs fileSystem) *readCountFS {
	return &readCountFS{fileSystem: fs, bytes: map[string]int64{}, largest: map[string]int{}}
}

type readCountFile struct {
	file
	fs   *readCountFS
	name string
}

func (c *readCountFS) OpenRW(name string) (file, error) {
	f, err := c.fileSystem.OpenRW(name)
	if err != nil {
		return nil, err
	}
	return &readCountFile{file: f, fs: c, name: filepath.Base(name)}, nil
}

func (c *readCountFS) Create(name string) (file, error) {
	f, err := c.fileSystem.Create(name)
	if err != nil {
		return nil, err
	}
	return &readCountFile{file: f, fs: c, name: filepath.Base(name)}, nil
}

func (f *readCountFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.file.ReadAt(p, off)
	f.fs.mu.Lock()
	f.fs.bytes[f.name] += int64(n)
	f.fs.largest[f.name] = max(f.fs.largest[f.name], len(p))
	f.fs.mu.Unlock()
	return n, err
}

// segmentReads returns, for each segment file name, the bytes read and
// the largest read.
func (c *readCountFS) segmentReads() (bytes map[string]int64, largest map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bytes, largest = map[string]int64{}, map[string]int{}
	for name, n := range c.bytes {
		if strings.HasSuffix(name, logSuffix) {
			bytes[name], largest[name] = n, c.largest[name]
		}
	}
	return bytes, largest
}

// readCheckpointFile decodes the checkpoint of the store at /store in fs.
func readCheckpointFile(t testing.TB, fs fileSystem) map[partKey]recoveryPoint {
	t.Helper()
	data, err := fs.ReadFile("/store/" + checkpointName)
	if err != nil {
		t.Fatal(err)
	}
	rps, err := decodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	return rps
}

// bigLog writes a partition of many segments with a source mix, through
// an index interval of 1 KiB, and returns the store still open.
func bigLog(t *testing.T, fs fileSystem, opts Options) (*Store, *Partition, []stored) {
	t.Helper()
	s := openFS(t, "/store", opts, fs)
	p := partitionT(t, s, testTopic, 3)
	want := sourceLoad(t, p, nil, 0, 300, 700)
	if len(p.segs) < 10 {
		t.Fatalf("%d segments", len(p.segs))
	}
	return s, p, want
}

func bigLogOpts() Options {
	opts := testOpts(16 << 10)
	opts.IndexIntervalBytes = 1 << 10
	return opts
}

// TestCleanOpenScansNothing: after a clean Close, Open reads no batch
// body: from every segment only its header, a few batch prefixes (a walk
// from the last index entry) and nothing else. The log and the source
// table are as they were, and Open clears the clean marks durably.
func TestCleanOpenScansNothing(t *testing.T) {
	fs := newMemFS()
	opts := bigLogOpts()
	s, p, want := bigLog(t, fs, opts)
	srcs := p.Sources()
	nsegs := len(p.segs)
	closeT(t, s)
	if rp := readCheckpointFile(t, fs)[partKey{testTopic, 3}]; !rp.clean || rp.next != want[len(want)-1].next() {
		t.Fatalf("checkpoint after Close: %+v", rp)
	}

	rc := newReadCountFS(fs)
	var logs logBuf
	opts.Logger = logs.logger()
	s = openFS(t, "/store", opts, rc)
	defer closeT(t, s)
	bytesRead, largest := rc.segmentReads()
	var total int64
	for name, n := range bytesRead {
		if largest[name] > walkReadSize {
			t.Errorf("%s: a read of %d bytes: more than a batch prefix", name, largest[name])
		}
		total += n
	}
	// Per segment: its header, and two prefix walks from the last index
	// entry (1 KiB: two batches or so here), this package's and the time
	// index's check, which reads the first batch's prefix too.
	if len(bytesRead) != nsegs || total > int64(nsegs)*(fileHeaderSize+8*walkReadSize) {
		t.Fatalf("read %d bytes from %d segments of %d", total, len(bytesRead), nsegs)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("warnings: %s", logs.String())
	}
	t.Logf("clean open read %d bytes of %d segments", total, nsegs)

	// The clean mark is gone, durably, before anything else can happen.
	if rp := readCheckpointFile(t, fs.crash(nil))[partKey{testTopic, 3}]; rp.clean {
		t.Fatalf("clean mark kept after Open: %+v", rp)
	}
	p = s.Lookup(testTopic, 3)
	checkSources(t, p, srcs)
	checkLog(t, p, want)
	more := appendBatch(t, p, srcBatch(t, "host-0", 2, 1<<40, 1<<40+10, 300))
	checkLog(t, p, append(want, more))
}

// crashAfterCheckpoint writes bigLog, waits until the checkpoint names the
// last segment and returns what a power cut leaves then, and the source
// table (every batch was acknowledged: all of them survive).
func crashAfterCheckpoint(t *testing.T, opts Options) (*memFS, []stored, map[SourceKey]SourceState) {
	t.Helper()
	fs := newMemFS()
	s, p, want := bigLog(t, fs, opts)
	last := p.segs[len(p.segs)-1].base
	waitFor(t, func() bool {
		data, err := fs.ReadFile("/store/" + checkpointName)
		rps, derr := decodeCheckpoint(data)
		return err == nil && derr == nil && rps[partKey{testTopic, 3}].base == last
	})
	srcs := p.Sources()
	img := fs.crash(nil)
	closeT(t, s)
	return img, want, srcs
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUncleanOpenScansFromRecoveryPoint: after a power cut, Open scans
// the segments from the recovery point on (here only the last one, which
// the roll checkpointed), and reads no batch body of the others; without
// the checkpoint it reads more of each older segment.
func TestUncleanOpenScansFromRecoveryPoint(t *testing.T) {
	opts := bigLogOpts()
	opts.CheckpointInterval = time.Hour // only rolls wake the checkpoint loop
	img, want, srcs := crashAfterCheckpoint(t, opts)
	ents, err := img.ReadDir("/store/" + testTopic + "-3")
	if err != nil {
		t.Fatal(err)
	}
	var lastName string
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name); ok {
			lastName = e.Name
		}
	}

	open := func(fs *memFS) (*Store, map[string]int64, map[string]int, string) {
		rc := newReadCountFS(fs)
		var logs logBuf
		o := opts
		o.Logger = logs.logger()
		s := openFS(t, "/store", o, rc)
		b, l := rc.segmentReads()
		return s, b, l, logs.String()
	}

	s, bytesRead, largest, logs := open(img.crash(nil))
	var older int64
	for name, n := range bytesRead {
		if name == lastName {
			continue
		}
		older += n
		if largest[name] > walkReadSize {
			t.Errorf("%s: a read of %d bytes: more than a batch prefix", name, largest[name])
		}
	}
	lastData, _ := img.ReadFile("/store/" + testTopic + "-3/" + lastName)
	lastSize := int64(len(lastData))
	if bytesRead[lastName] < lastSize-fileHeaderSize {
		t.Errorf("last segment: %d bytes read of %d", bytesRead[lastName], lastSize)
	}
	if strings.Contains(logs, "level=WARN") || strings.Contains(logs, "replaying segment") {
		t.Fatalf("logs: %s", logs)
	}
	p := s.Lookup(testTopic, 3)
	checkSources(t, p, srcs)
	checkLog(t, p, want)
	closeT(t, s)

	// Without the checkpoint: every older segment is verified with whole
	// batches after its last index entry.
	noCP := img.crash(nil)
	if err := noCP.Remove("/store/" + checkpointName); err != nil {
		t.Fatal(err)
	}
	s, bytesRead, _, _ = open(noCP)
	var olderNoCP int64
	for name, n := range bytesRead {
		if name != lastName {
			olderNoCP += n
		}
	}
	checkSources(t, s.Lookup(testTopic, 3), srcs)
	closeT(t, s)
	t.Logf("older segments: %d bytes read with the checkpoint, %d without; last segment %d bytes", older, olderNoCP, lastSize)
	if olderNoCP <= older {
		t.Fatalf("older segments: %d bytes read with the checkpoint, %d without", older, olderNoCP)
	}
}

// TestDamageBeforeRecoveryPoint: bytes of the last segment that the
// checkpoint saw fsynced are not a torn tail: damage there is a
// *CorruptionError naming the file and batch, and nothing is cut; damage
// after the recovery point is cut as usual; a missing last segment whose
// data was durable is a *CorruptionError too.
func TestDamageBeforeRecoveryPoint(t *testing.T) {
	opts := bigLogOpts()
	fs := newMemFS()
	s, p, want := bigLog(t, fs, opts)
	// Some batches in the new last segment, and a checkpoint after them.
	if err := s.writeCheckpoint(nil); err != nil {
		t.Fatal(err)
	}
	rp := readCheckpointFile(t, fs)[partKey{testTopic, 3}]
	lastPath := p.segs[len(p.segs)-1].path
	if rp.base != p.segs[len(p.segs)-1].base || rp.pos <= fileHeaderSize+500 {
		t.Fatalf("recovery point %+v", rp)
	}
	img := fs.crash(nil)
	closeT(t, s)
	data, _ := img.ReadFile(lastPath)
	var pos []int64
	for at := int64(fileHeaderSize); at < int64(len(data)); {
		pos = append(pos, at)
		n, err := batch.CheckPrefix(data[at:])
		if err != nil {
			t.Fatal(err)
		}
		at += int64(n)
	}
	if pos[len(pos)-1] != rp.pos && int64(len(data)) != rp.pos {
		// The checkpoint was taken after the last append.
		t.Fatalf("positions %v, recovery point %d", pos, rp.pos)
	}

	t.Run("before", func(t *testing.T) {
		fs := img.crash(nil)
		d := bytes.Clone(data)
		d[pos[1]+40] ^= 1
		fs.Remove(lastPath)
		writeMem(t, fs, lastPath, d)
		_, err := open("/store", opts, fs)
		wantCorruption(t, err, lastPath, pos[1])
		if got, _ := fs.ReadFile(lastPath); !bytes.Equal(got, d) {
			t.Fatal("segment changed")
		}
		if _, err := fs.ReadFile(lastPath + brokenSuffix); err == nil {
			t.Fatal(".broken written")
		}
	})
	t.Run("after", func(t *testing.T) {
		fs := img.crash(nil)
		torn := append(bytes.Clone(data), data[fileHeaderSize:fileHeaderSize+50]...)
		fs.Remove(lastPath)
		writeMem(t, fs, lastPath, torn)
		s, err := open("/store", opts, fs)
		if err != nil {
			t.Fatal(err)
		}
		defer closeT(t, s)
		checkLog(t, s.Lookup(testTopic, 3), want)
	})
	t.Run("last segment missing", func(t *testing.T) {
		fs := img.crash(nil)
		for _, f := range []string{lastPath, indexPathOf(lastPath), timeIndexPathOf(lastPath)} {
			fs.Remove(f)
		}
		_, err := open("/store", opts, fs)
		var ce *CorruptionError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "checkpoint") {
			t.Fatalf("Open: %v", err)
		}
	})
}

// TestCheckpointDamage truncates the checkpoint at every byte offset and
// flips every byte of it, after a clean Close and after a power cut:
// reopening ignores it (logged at WARN), recovers every partition as
// without one, with the same batches and the same source tables, and the
// next append works.
func TestCheckpointDamage(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			fs := newMemFS()
			opts := testOpts(4096)
			s := openFS(t, "/store", opts, fs)
			want := map[int][]stored{}
			srcs := map[int]map[SourceKey]SourceState{}
			for _, id := range []int{0, 3} {
				p := partitionT(t, s, testTopic, id)
				want[id] = sourceLoad(t, p, nil, 0, 40+id*10, 300)
				srcs[id] = p.Sources()
			}
			if err := s.writeCheckpoint(nil); err != nil {
				t.Fatal(err)
			}
			img := fs.crash(nil)
			closeT(t, s)
			if clean {
				img = fs
			}
			data, err := img.ReadFile("/store/" + checkpointName)
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
				fs.Remove("/store/" + checkpointName)
				writeMem(t, fs, "/store/"+checkpointName, d)
				var logs logBuf
				o := opts
				o.Logger = logs.logger()
				s, err := open("/store", o, fs)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				if !strings.Contains(logs.String(), "ignoring checkpoint") {
					t.Fatalf("case %d: logs: %s", i, logs.String())
				}
				for _, id := range []int{0, 3} {
					p := s.Lookup(testTopic, id)
					checkSources(t, p, srcs[id])
					if p.End() != want[id][len(want[id])-1].next() {
						t.Fatalf("case %d: partition %d ends at %d", i, id, p.End())
					}
				}
				appendBatch(t, s.Lookup(testTopic, 3), srcBatch(t, "new", 1, 0, 10, 100))
				closeT(t, s)
			}
			// One full check of the log on the last case's result.
			s = openFS(t, "/store", opts, img.crash(nil))
			checkLog(t, s.Lookup(testTopic, 0), want[0])
			closeT(t, s)
		})
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	rps := map[partKey]recoveryPoint{
		{"b", 0}:      {base: 10, pos: 32, next: 10},
		{"a", 7}:      {base: 0, pos: 4000, next: 77, clean: true},
		{"a-x.y", 70}: {base: 1 << 40, pos: 1 << 31, next: 1<<40 + 5},
	}
	got, err := decodeCheckpoint(encodeCheckpoint(rps))
	if err != nil || !maps.Equal(got, rps) {
		t.Fatalf("%v %+v", err, got)
	}
	if got, err := decodeCheckpoint(encodeCheckpoint(nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %+v", err, got)
	}
}

// FuzzCheckpoint: the checkpoint decoder never panics, refuses with
// errCheckpoint, and what it accepts encodes back to the same bytes.
func FuzzCheckpoint(f *testing.F) {
	good := encodeCheckpoint(map[partKey]recoveryPoint{{"app", 0}: {base: 5, pos: 100, next: 9, clean: true}, {"web", 2}: {base: 0, pos: 32, next: 0}})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(encodeCheckpoint(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		rps, err := decodeCheckpoint(data)
		if err != nil {
			if !errors.Is(err, errCheckpoint) {
				t.Fatalf("error %v does not wrap errCheckpoint", err)
			}
			return
		}
		again, err := decodeCheckpoint(encodeCheckpoint(rps))
		if err != nil || !maps.Equal(again, rps) {
			t.Fatalf("accepted checkpoint does not encode back: %v", err)
		}
	})
}

// TestCheckpointLoop: the Store's goroutine writes the checkpoint soon
// after a roll and every CheckpointInterval, with durable positions only.
func TestCheckpointLoop(t *testing.T) {
	t.Run("roll", func(t *testing.T) {
		fs := newMemFS()
		opts := testOpts(2048)
		opts.CheckpointInterval = time.Hour
		s := openFS(t, "/store", opts, fs)
		defer closeT(t, s)
		p := partitionT(t, s, testTopic, 3)
		appendMany(t, p, 0, 30)
		last := p.segs[len(p.segs)-1].base
		waitFor(t, func() bool {
			data, _ := fs.ReadFile("/store/" + checkpointName)
			rps, err := decodeCheckpoint(data)
			return err == nil && rps[partKey{testTopic, 3}].base == last
		})
	})
	t.Run("interval", func(t *testing.T) {
		fs := newMemFS()
		opts := testOpts(1 << 20)
		opts.CheckpointInterval = time.Millisecond
		opts.Fsync = FsyncNever
		s := openFS(t, "/store", opts, fs)
		defer closeT(t, s)
		p := partitionT(t, s, testTopic, 3)
		want := appendMany(t, p, 0, 5)
		time.Sleep(20 * time.Millisecond)
		// Nothing was fsynced since the partition was created: the
		// recovery point stays at the segment's header.
		if rp := readCheckpointFile(t, fs)[partKey{testTopic, 3}]; rp.pos != fileHeaderSize || rp.next != 0 {
			t.Fatalf("recovery point %+v before any fsync", rp)
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		end := want[len(want)-1].next()
		waitFor(t, func() bool {
			data, _ := fs.ReadFile("/store/" + checkpointName)
			rps, err := decodeCheckpoint(data)
			return err == nil && rps[partKey{testTopic, 3}].next == end
		})
	})
}

// TestPowerLossSources cuts the power while several writers append over
// rolls, with checkpoints written all the time: the store reopens without
// error (the recovery points only ever claimed fsynced bytes), and the
// source table is exactly the one the surviving batches give.
func TestPowerLossSources(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncNever} {
		for seed := range uint64(8) {
			t.Run(fmt.Sprintf("%v/seed=%d", policy, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 11))
				fs := newMemFS()
				opts := testOpts(3000)
				opts.Fsync, opts.CheckpointInterval = policy, time.Millisecond
				s := openFS(t, "/store", opts, fs)
				p := partitionT(t, s, testTopic, 0)
				const writers, perWriter = 4, 40
				cutAfter := 1 + rng.IntN(writers*perWriter-1)
				var n atomic.Int64
				var crashed *memFS
				var once sync.Once
				cut := make(chan struct{})
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for i := range perWriter {
							b := srcBatch(t, fmt.Sprint("host-", w), uint64(i%3), int64(i*100), int64(i*100+100), 200)
							h, _ := batch.Parse(b)
							res, err := p.Append(b, &h, nil)
							if err == nil {
								err = p.WaitDurable(res.Next)
							}
							if err != nil {
								t.Error(err)
								return
							}
							if n.Add(1) == int64(cutAfter) {
								once.Do(func() { crashed = fs.crash(rng); close(cut) })
							}
						}
					})
				}
				<-cut
				wg.Wait()
				closeT(t, s)
				if data, err := crashed.ReadFile("/store/" + checkpointName); err == nil {
					rps, _ := decodeCheckpoint(data)
					t.Logf("crash image checkpoint: %+v", rps)
				}
				s, err := open("/store", opts, crashed)
				if err != nil {
					t.Fatal(err)
				}
				defer closeT(t, s)
				p = s.Lookup(testTopic, 0)
				checkSources(t, p, scannedSources(t, p))
				more := appendBatch(t, p, srcBatch(t, "new", 1, 0, 10, 100))
				if st := p.Sources()[SourceKey{"new", 1}]; st.LastOffset != more.next()-1 {
					t.Fatalf("after the append: %+v", st)
				}
			})
		}
	}
}

// TestCleanOpenContinuesIndex: the last segment set up from its files
// after a clean shutdown goes on exactly as if it had been scanned: the
// offset index after more appends is the one a scan builds.
func TestCleanOpenContinuesIndex(t *testing.T) {
	fs := newMemFS()
	opts := testOpts(1 << 20)
	s := openFS(t, "/store", opts, fs)
	want := appendMany(t, partitionT(t, s, testTopic, 3), 0, 30)
	closeT(t, s)
	s = openFS(t, "/store", opts, fs)
	want = append(want, appendMany(t, s.Lookup(testTopic, 3), 30, 30)...)
	closeT(t, s)
	idx := "/store/" + testTopic + "-3/" + strings.TrimSuffix(segmentName(0), logSuffix) + indexSuffix
	continued, err := fs.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{idx, "/store/" + checkpointName} {
		if err := fs.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	s = openFS(t, "/store", opts, fs) // scans the segment
	checkLog(t, s.Lookup(testTopic, 3), want)
	closeT(t, s)
	scanned, _ := fs.ReadFile(idx)
	if !bytes.Equal(continued, scanned) || len(scanned) < fileHeaderSize+10*indexEntrySize {
		t.Fatalf("index after a clean open and appends (%d bytes) differs from a scan's (%d bytes)", len(continued), len(scanned))
	}
}

// TestCleanOpenEmptyLast: a clean shutdown with an empty last segment (a
// new partition; a roll by age with nothing after it) opens without a
// scan or a warning, and appends go on.
func TestCleanOpenEmptyLast(t *testing.T) {
	clk := newClock()
	opts := testOpts(1 << 20)
	opts.Now, opts.SegmentMaxAge = clk.Now, time.Hour
	fs := newMemFS()
	s := openFS(t, "/store", opts, fs)
	partitionT(t, s, testTopic, 1) // never written
	p := partitionT(t, s, testTopic, 3)
	want := appendMany(t, p, 0, 5)
	clk.Add(2 * time.Hour)
	if err := p.rollIfOld(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if n := len(p.segs); n != 2 {
		t.Fatalf("%d segments", n)
	}
	srcs := p.Sources()
	closeT(t, s)
	var logs logBuf
	opts.Logger = logs.logger()
	s = openFS(t, "/store", opts, fs)
	defer closeT(t, s)
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("warnings: %s", logs.String())
	}
	p = s.Lookup(testTopic, 3)
	checkSources(t, p, srcs)
	checkLog(t, p, want)
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 9, 2, 10)))
	checkLog(t, p, want)
	q := s.Lookup(testTopic, 1)
	checkLog(t, q, nil)
	checkLog(t, q, []stored{appendBatch(t, q, makeBatch(t, testTopic, 1, 1, 10))})
}
