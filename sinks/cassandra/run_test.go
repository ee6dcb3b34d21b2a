package cassandra

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/internal/fakeagg"
	"logship/sinks/internal/sinktest"
)

const (
	sinkName = "cass"
	aggID    = "agg-1"
	wait     = 20 * time.Second
)

func startAgg(t *testing.T) *fakeagg.Server {
	t.Helper()
	a, err := fakeagg.Start(aggID, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func fill(t *testing.T, a *fakeagg.Server, topic string, part int, from, to int64, perBatch int) {
	t.Helper()
	for o := from; o < to; o += int64(perBatch) {
		end := min(o+int64(perBatch), to)
		if _, err := a.Append(topic, part, batch.Zstd, sinktest.Lines(topic, part, o, end)...); err != nil {
			t.Fatal(err)
		}
	}
}

// runSink runs sinks.Run over s until the returned stop is called.
func runSink(t *testing.T, a *fakeagg.Server, s sinks.Sink) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sinks.Run(ctx, sinks.Options{
			Name: sinkName, Aggregators: []string{a.Addr()}, MaxWait: 20 * time.Millisecond,
			MetadataInterval: 50 * time.Millisecond, CloseTimeout: 5 * time.Second,
		}, s)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatal("Run did not return after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitCommitted(t *testing.T, a *fakeagg.Server, topic string, part int, off int64) {
	t.Helper()
	sinktest.Eventually(t, wait, "commit", func() bool {
		got, ok := a.Committed(sinkName, topic, part)
		return ok && got == off
	})
}

// checkRows checks that the fake table holds exactly the records [0, n) of
// a partition, each with its line, time, host and source.
func checkRows(t *testing.T, f *fakeSession, topic string, part int, n int64) {
	t.Helper()
	rows := f.byOffset(t, aggID, topic, part)
	if int64(len(rows)) != n {
		t.Fatalf("%s/%d: %d rows, want %d", topic, part, len(rows), n)
	}
	for o := range n {
		r, ok := rows[o]
		if !ok || r.line != sinktest.Line(topic, part, o) || r.source != "/var/log/"+topic+".log" || r.hasRaw {
			t.Fatalf("%s/%d offset %d: %+v (present %v)", topic, part, o, r, ok)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.rows {
		if id.Topic == topic && id.partition == part {
			// fakeagg: record i's time is i seconds; its host is host-1.
			if id.ts != id.offset*1000 || id.Host != "host-1" || id.Bucket != id.offset/3600*3600*1000 {
				t.Fatalf("row %+v: key not from the record", id)
			}
		}
	}
}

// TestRunEndToEnd: records of several partitions go through sinks.Run into
// the fake table, with failures of every transient kind and a refused
// record on the way; every commit follows the writes, a replay rewrites
// the same rows, and a restart resumes at the commit.
func TestRunEndToEnd(t *testing.T) {
	a := startAgg(t)
	f := newFake()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	refused := sinktest.Line("web", 1, 1234)
	f.setFail(func(rows []Row) error {
		for _, r := range rows {
			if string(r.Line) == refused {
				return errInvalid
			}
		}
		mu.Lock()
		defer mu.Unlock()
		switch rng.IntN(10) {
		case 0:
			return errWriteTO
		case 1:
			return errUnavailable
		}
		return nil
	})
	// Commits must never pass what the table holds.
	a.SetCommitHook(func(sink, topic string, part int, off int64) bool {
		rows := f.byOffset(t, aggID, topic, part)
		for o := range off {
			if _, ok := rows[o]; !ok && !(topic == "web" && part == 1 && o == 1234) {
				t.Errorf("commit %s/%d at %d, but offset %d is not written", topic, part, off, o)
				return false
			}
		}
		return true
	})
	dir := t.TempDir()
	newSink := func() *Sink {
		return newTestSink(t, f, Options{
			Name: sinkName, DeadLetterDir: dir, BatchMaxBytes: 2000, Concurrency: 4,
			RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		})
	}
	sizes := map[string]int64{"app": 3000, "web": 2500}
	for topic, n := range sizes {
		for part := range 2 {
			fill(t, a, topic, part, 0, n, 100)
		}
	}
	s := newSink()
	stop := runSink(t, a, s)
	for topic, n := range sizes {
		for part := range 2 {
			waitCommitted(t, a, topic, part, n)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s.Close()
	checkBatches(t, f, 2000)
	checkRows(t, f, "app", 0, 3000)
	checkRows(t, f, "app", 1, 3000)
	checkRows(t, f, "web", 0, 2500)
	letters, _ := readDeadLetters(t, dir, sinkName)
	if len(letters) != 1 || letters[0].Offset != 1234 || letters[0].Topic != "web" || letters[0].Partition != 1 {
		t.Fatalf("dead letters: %+v", letters)
	}
	if st := s.Stats(); st.Retries == 0 || st.Errors["timeout"] == 0 || st.Errors["unavailable"] == 0 {
		t.Fatalf("no failures were injected? %+v", st)
	}

	// Restart with more records, and an operator's replay of app/0 from
	// 1000: the replayed rows are written again, the table does not grow
	// beyond the new records.
	fill(t, a, "app", 0, 3000, 3500, 100)
	before := f.rowCount()
	f.mu.Lock()
	writesBefore := f.writes
	f.mu.Unlock()
	a.Reset(sinkName, "app", 0, 1000)
	s = newSink()
	stop = runSink(t, a, s)
	waitCommitted(t, a, "app", 0, 3500)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkRows(t, f, "app", 0, 3500)
	if got := f.rowCount(); got != before+500 {
		t.Fatalf("%d rows after the replay, want %d", got, before+500)
	}
	f.mu.Lock()
	rewritten := f.writes - writesBefore
	f.mu.Unlock()
	if rewritten < 2500 {
		t.Fatalf("%d rows written after the reset to 1000, want at least 2500", rewritten)
	}
}

// TestRunStopsWhileCassandraIsDown: with every write failing, Run still
// stops within its CloseTimeout, and nothing is committed.
func TestRunStopsWhileCassandraIsDown(t *testing.T) {
	a := startAgg(t)
	f := newFake()
	f.setFail(func([]Row) error { return errUnavailable })
	fill(t, a, "app", 0, 0, 500, 50)
	s := newTestSink(t, f, Options{Name: sinkName, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	stop := runSink(t, a, s)
	sinktest.Eventually(t, wait, "retries", func() bool { return s.Stats().Retries > 20 })
	start := time.Now()
	err := stop()
	if took := time.Since(start); took > 5*time.Second+2*time.Second {
		t.Fatalf("Run took %s to stop, CloseTimeout is 5s", took)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v; want an unclean stop naming the unwritten batches", err)
	}
	if off, ok := a.Committed(sinkName, "app", 0); ok && off > 0 {
		t.Fatalf("committed %d with nothing written", off)
	}
	if n := f.rowCount(); n != 0 {
		t.Fatalf("%d rows", n)
	}
}
