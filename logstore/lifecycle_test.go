package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"logship/logstore/batch"
)

// Segment lifecycle: roll by age, the time index, retention, Info.

// manualClock is an Options.Now that tests move by hand.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *manualClock { return &manualClock{t: fixedNow()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// appendAt appends one small batch with the clock at its current time and
// returns it with its append time.
func appendAt(t testing.TB, p *Partition, seq int) (stored, int64) {
	t.Helper()
	s := appendBatch(t, p, makeBatch(t, p.Topic(), seq, 1+seq%3, 40))
	h, err := batch.Parse(s.data)
	if err != nil {
		t.Fatal(err)
	}
	return s, h.AppendTime
}

func TestRollByAgeOnAppend(t *testing.T) {
	clk := newClock()
	opts := testOpts(1 << 20)
	opts.Now, opts.SegmentMaxAge = clk.Now, time.Hour
	dir := t.TempDir()
	s := openT(t, dir, opts)
	p := partitionT(t, s, testTopic, 3)
	clk.Add(10 * time.Hour) // an empty segment does not age: nothing to roll
	want := []stored{appendBatch(t, p, makeBatch(t, testTopic, 0, 1, 10))}
	if n := p.Info().Segments; n != 1 {
		t.Fatalf("%d segments after the first batch, want 1", n)
	}
	clk.Add(59 * time.Minute)
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 1, 1, 10)))
	if n := p.Info().Segments; n != 1 {
		t.Fatalf("%d segments before the age, want 1", n)
	}
	clk.Add(time.Minute) // the first batch is 1h old: the next append rolls
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 2, 1, 10)))
	if n := p.Info().Segments; n != 2 {
		t.Fatalf("%d segments at the age, want 2", n)
	}
	// A restart does not make the active segment young again: its age
	// counts from its first batch's append time.
	closeT(t, s)
	clk.Add(30 * time.Minute)
	s = openT(t, dir, opts)
	defer closeT(t, s)
	p = s.Lookup(testTopic, 3)
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 3, 1, 10)))
	if n := p.Info().Segments; n != 2 {
		t.Fatalf("%d segments 30m into the second segment, want 2", n)
	}
	clk.Add(30 * time.Minute)
	want = append(want, appendBatch(t, p, makeBatch(t, testTopic, 4, 1, 10)))
	if n := p.Info().Segments; n != 3 {
		t.Fatalf("%d segments 1h into the second segment, across a restart; want 3", n)
	}
	for _, w := range want {
		if got, err := p.Read(w.base, 1); err != nil || !bytes.Equal(got, w.data) {
			t.Fatalf("Read(%d): %v", w.base, err)
		}
	}
}

// TestRollByAgeTimer: an idle partition's active segment rolls by the
// Store's timer, with no append, so that retention can delete it; an empty
// one never rolls.
func TestRollByAgeTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := Options{SegmentMaxAge: time.Hour, RetentionCheckInterval: 10 * time.Minute, Fsync: FsyncNever}
		s := openFS(t, "/store", opts, newMemFS())
		defer closeT(t, s)
		idle := partitionT(t, s, testTopic, 0)
		empty := partitionT(t, s, testTopic, 1)
		time.Sleep(30 * time.Minute)
		appendMany(t, idle, 0, 3)
		time.Sleep(time.Hour - time.Millisecond)
		synctest.Wait()
		if n := idle.Info().Segments; n != 1 {
			t.Fatalf("%d segments before the age, want 1", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := idle.Info().Segments; n != 2 {
			t.Fatalf("%d segments at the age, want 2: the timer did not roll", n)
		}
		time.Sleep(5 * time.Hour)
		synctest.Wait()
		if n, m := idle.Info().Segments, empty.Info().Segments; n != 2 || m != 1 {
			t.Fatalf("%d and %d segments after idle hours, want 2 and 1: empty segments do not roll", n, m)
		}
	})
}

// TestRollByAgeAndRetentionTimer: the same goroutine enforces retention,
// so an idle partition's data does expire.
func TestRollByAgeAndRetentionTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := Options{SegmentMaxAge: time.Hour, RetentionAge: 24 * time.Hour, RetentionCheckInterval: time.Minute, Fsync: FsyncNever}
		s := openFS(t, "/store", opts, newMemFS())
		defer closeT(t, s)
		p := partitionT(t, s, testTopic, 0)
		want := appendMany(t, p, 0, 3)
		time.Sleep(24*time.Hour + time.Minute)
		synctest.Wait()
		if got := p.Info(); got.Start != want[len(want)-1].next() || got.Segments != 1 {
			t.Fatalf("after a day idle: %+v; want everything expired, one empty segment", got)
		}
	})
}

func TestOffsetForTime(t *testing.T) {
	clk := newClock()
	opts := testOpts(1024) // a few batches per segment
	opts.Now, opts.IndexIntervalBytes = clk.Now, 64
	dir := t.TempDir()
	s := openT(t, dir, opts)
	defer func() { closeT(t, s) }()
	p := partitionT(t, s, testTopic, 3)
	t0 := clk.Now()
	if off, err := p.OffsetForTime(t0); err != nil || off != 0 {
		t.Fatalf("empty partition: %d, %v", off, err)
	}
	// Batches 10ms apart, with runs of equal append times and a clock that
	// goes back (clamped: the append time stays).
	var batches []stored
	var times []int64
	step := []time.Duration{10, 0, 0, 10, 10, -500, 10, 600, 0, 10}
	for i := range 60 {
		clk.Add(step[i%len(step)] * time.Millisecond)
		b, at := appendAt(t, p, i)
		if n := len(times); n > 0 && at < times[n-1] {
			t.Fatalf("append time %d after %d: not monotonic", at, times[n-1])
		}
		batches, times = append(batches, b), append(times, at)
	}
	if n := p.Info().Segments; n < 5 {
		t.Fatalf("only %d segments", n)
	}
	end := p.End()
	// want returns the first batch at or after ms, by brute force.
	want := func(ms int64) int64 {
		for i, at := range times {
			if at >= ms {
				return batches[i].base
			}
		}
		return end
	}
	check := func(t *testing.T, p *Partition) {
		t.Helper()
		probes := []int64{t0.UnixMilli() - 1000, times[0] - 1, times[len(times)-1], times[len(times)-1] + 1, times[len(times)-1] + 1e6}
		for _, at := range times {
			probes = append(probes, at-1, at, at+1)
		}
		for _, ms := range probes {
			got, err := p.OffsetForTime(time.UnixMilli(ms))
			if err != nil || got != want(ms) {
				t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", ms, got, err, want(ms))
			}
		}
		// Sub-millisecond times round up: nothing was appended between ms
		// and ms+1.
		if got, _ := p.OffsetForTime(time.UnixMilli(times[3]).Add(time.Microsecond)); got != want(times[3]+1) {
			t.Fatalf("OffsetForTime(%d ms + 1µs) = %d, want %d", times[3], got, want(times[3]+1))
		}
	}
	t.Run("open", func(t *testing.T) { check(t, p) })
	closeT(t, s)
	s = openT(t, dir, opts)
	p = s.Lookup(testTopic, 3)
	t.Run("reopened", func(t *testing.T) { check(t, p) })
	// The clamp survives a restart: a clock behind the last append time
	// stamps the last append time.
	clk.Add(-time.Hour)
	if _, at := appendAt(t, p, 99); at != times[len(times)-1] {
		t.Fatalf("append after a restart with the clock 1h back stamped %d, want %d", at, times[len(times)-1])
	}
}

// retentionStore makes a partition of six segments, rolled by age
// (opts.SegmentMaxAge must be 1h), whose batches were appended at the
// start and 1h, ..., 5h later, and returns them. The clock is left at 5h:
// the active segment is not old enough for the Store's goroutine to roll.
// Tests pass later times to EnforceRetention rather than move the clock.
func retentionStore(t *testing.T, opts Options, clk *manualClock) (*Store, *Partition, [][]stored) {
	t.Helper()
	opts.Now = clk.Now
	s := openFS(t, t.TempDir(), opts, noSyncFS{})
	p := partitionT(t, s, testTopic, 3)
	var segs [][]stored
	for i := range 6 {
		if i > 0 {
			clk.Add(time.Hour)
		}
		var batches []stored
		for j := range 3 {
			batches = append(batches, appendBatch(t, p, makeBatch(t, testTopic, i*10+j, 2, 100)))
		}
		segs = append(segs, batches)
		if n := p.Info().Segments; n != i+1 {
			t.Fatalf("%d segments, want %d", n, i+1)
		}
	}
	return s, p, segs
}

func TestRetentionByAge(t *testing.T) {
	clk := newClock()
	var logs logBuf
	opts := testOpts(1 << 20)
	opts.Logger, opts.SegmentMaxAge, opts.RetentionAge = logs.logger(), time.Hour, 3*time.Hour
	s, p, segs := retentionStore(t, opts, clk)
	defer closeT(t, s)
	// Segments 0..5 were last appended at 0h..5h; 5 is active. At 6h,
	// older than 3h: 0, 1 and 2.
	if err := s.EnforceRetention(clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Start(), segs[3][0].base; got != want {
		t.Fatalf("Start = %d, want %d", got, want)
	}
	if n := len(segmentFiles(t, p.dir)); n != 3 {
		t.Fatalf("%d segment files left, want 3", n)
	}
	for _, w := range []string{"level=INFO", "deleted segment", "topic=" + testTopic, "partition=3", "reason=\"age:", "segment=" + filepath.Join(p.dir, segmentName(0))} {
		if !strings.Contains(logs.String(), w) {
			t.Fatalf("log does not say %q: %s", w, logs.String())
		}
	}
	var want []stored
	for _, b := range segs[3:] {
		want = append(want, b...)
	}
	checkLog(t, p, want)
	if _, err := p.Read(segs[2][0].base, 100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read of a deleted offset: %v", err)
	}
	// Never the active segment, however old.
	if err := s.EnforceRetention(clk.Now().Add(1000 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := p.Info(); got.Segments != 1 || got.Start != segs[5][0].base || got.End != segs[5][2].next() {
		t.Fatalf("after everything expired: %+v; want only the active segment", got)
	}
}

// TestRetentionFutureRecords: records whose own timestamps are far in
// the future do not keep a segment (KAFKA-20609): retention goes by
// append time.
func TestRetentionFutureRecords(t *testing.T) {
	clk := newClock()
	opts := testOpts(1 << 20)
	opts.Now, opts.SegmentMaxAge, opts.RetentionAge = clk.Now, time.Hour, time.Hour
	s := openT(t, t.TempDir(), opts)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	bl, err := batch.NewBuilder(batch.None)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	future := time.Now().Add(100 * 365 * 24 * time.Hour).UnixMilli()
	bl.Add(future, []byte("from the future"))
	b, err := bl.Build(nil, batch.Meta{Agent: "a", Topic: testTopic, Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	appendBatch(t, p, b)
	clk.Add(2 * time.Hour)
	appendMany(t, p, 1, 1) // rolls: the first segment is sealed
	if err := s.EnforceRetention(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if p.Start() != 1 {
		t.Fatalf("Start = %d: the segment with future records did not expire", p.Start())
	}
}

func TestRetentionByBytes(t *testing.T) {
	clk := newClock()
	opts := testOpts(1 << 20)
	opts.SegmentMaxAge = time.Hour
	s, p, segs := retentionStore(t, opts, clk)
	defer closeT(t, s)
	info := p.Info()
	files := segmentFiles(t, p.dir)
	sizes := make([]int64, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		sizes[i] = fi.Size()
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	if info.Bytes != total {
		t.Fatalf("Info().Bytes = %d, files hold %d", info.Bytes, total)
	}
	// Keep at most the last three segments' bytes: the first three go.
	// SetRetention changes it on the running Store (a reload).
	limit := sizes[3] + sizes[4] + sizes[5]
	if err := s.SetRetention(0, limit); err != nil {
		t.Fatal(err)
	}
	if err := s.EnforceRetention(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Start(), segs[3][0].base; got != want {
		t.Fatalf("Start = %d, want %d", got, want)
	}
	if got := p.Info().Bytes; got > limit {
		t.Fatalf("%d bytes left, retention %d", got, limit)
	}
	if err := s.SetRetention(0, 1); err != nil { // never the active segment
		t.Fatal(err)
	}
	if err := s.EnforceRetention(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got := p.Info(); got.Segments != 1 || got.Start != segs[5][0].base {
		t.Fatalf("%+v; want the active segment only", got)
	}
	checkLog(t, p, segs[5])
}

// TestRetentionWithReaders: a reader that holds a segment (a Slice, or a
// Scan in progress) when retention deletes it reads it to the end.
func TestRetentionWithReaders(t *testing.T) {
	clk := newClock()
	opts := testOpts(1 << 20)
	opts.SegmentMaxAge, opts.RetentionAge, opts.MaxOpenSegments = time.Hour, time.Hour, 1
	s, p, segs := retentionStore(t, opts, clk)
	defer closeT(t, s)
	sl, err := p.ReadSlice(segs[0][0].base, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Release()
	var scanned []int64
	scanErr := make(chan error, 1)
	inScan, resume := make(chan struct{}), make(chan struct{})
	go func() {
		scanErr <- p.Scan(func(h *batch.Header) error {
			if len(scanned) == 1 {
				close(inScan)
				<-resume
			}
			scanned = append(scanned, h.BaseOffset)
			return nil
		})
	}()
	<-inScan
	if err := s.EnforceRetention(clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.Start() != segs[5][0].base {
		t.Fatalf("Start = %d, want %d", p.Start(), segs[5][0].base)
	}
	if _, err := os.Stat(filepath.Join(p.dir, segmentName(0))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted segment still there: %v", err)
	}
	// The Slice still reads the whole first segment, deleted and evicted.
	var buf bytes.Buffer
	if n, err := sl.WriteTo(&buf); err != nil || n != sl.Len {
		t.Fatalf("WriteTo after deletion: %d of %d bytes, %v", n, sl.Len, err)
	}
	checkBatches(t, buf.Bytes(), segs[0])
	if buf.Len() != sumLen(segs[0]) {
		t.Fatalf("slice of %d bytes, segment holds %d", buf.Len(), sumLen(segs[0]))
	}
	// The Scan finishes the segment it is in, and skips the deleted ones
	// it had not reached.
	close(resume)
	if err := <-scanErr; err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, b := range segs[0] {
		want = append(want, b.base)
	}
	for _, b := range segs[5] {
		want = append(want, b.base)
	}
	if fmt.Sprint(scanned) != fmt.Sprint(want) {
		t.Fatalf("Scan saw %v, want %v", scanned, want)
	}
}

func TestInfo(t *testing.T) {
	clk := newClock()
	opts := testOpts(1024)
	opts.Now = clk.Now
	s := openT(t, t.TempDir(), opts)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	if got := p.Info(); got.Start != 0 || got.End != 0 || got.Segments != 1 || got.Bytes != fileHeaderSize ||
		!got.FirstAppendTime.IsZero() || !got.LastAppendTime.IsZero() || got.Topic != testTopic || got.Partition != 3 {
		t.Fatalf("empty: %+v", got)
	}
	first := clk.Now()
	want := appendMany(t, p, 0, 20)
	clk.Add(time.Minute)
	want = append(want, appendMany(t, p, 20, 1)...)
	got := p.Info()
	if got.End != want[len(want)-1].next() || got.Segments != len(segmentFiles(t, p.dir)) || got.Segments < 3 ||
		!got.FirstAppendTime.Equal(first) || !got.LastAppendTime.Equal(clk.Now()) {
		t.Fatalf("%+v", got)
	}
}

// TestLag: the bytes from the batch holding an offset to the end are the
// sizes of the batches from there, across segments, and its time is that
// batch's append time.
func TestLag(t *testing.T) {
	clk := newClock()
	opts := testOpts(1024)
	opts.Now = clk.Now
	s := openT(t, t.TempDir(), opts)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 3)
	if l, err := p.Lag(0); err != nil || l != (ConsumerLag{}) {
		t.Fatalf("empty: %+v, %v", l, err)
	}
	var want []stored
	var times []time.Time
	for i := range 20 {
		clk.Add(time.Second)
		want = append(want, appendMany(t, p, i, 1)...)
		times = append(times, clk.Now())
	}
	if len(segmentFiles(t, p.dir)) < 3 {
		t.Fatal("want several segments")
	}
	for i, b := range want {
		var total int64
		for _, c := range want[i:] {
			total += int64(len(c.data))
		}
		end := want[len(want)-1].next()
		for _, off := range []int64{b.base, b.next() - 1} {
			l, err := p.Lag(off)
			if err != nil || l.Bytes != total || l.Records != end-off || !l.AppendTime.Equal(times[i]) {
				t.Fatalf("Lag(%d) = %+v, %v; want %d bytes, %d records, time %v", off, l, err, total, end-off, times[i])
			}
		}
	}
	if l, err := p.Lag(want[len(want)-1].next()); err != nil || l != (ConsumerLag{}) {
		t.Fatalf("at the end: %+v, %v", l, err)
	}
}
