package cassandra

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/goleak"

	"logship/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// reqErr is a Cassandra error with a protocol code, as the driver returns
// one (it implements gocql.RequestError).
type reqErr struct{ code int }

func (e reqErr) Code() int       { return e.code }
func (e reqErr) Message() string { return fmt.Sprintf("error code %#x", e.code) }
func (e reqErr) Error() string   { return e.Message() }

var (
	errInvalid     = reqErr{gocql.ErrCodeInvalid}
	errUnavailable = reqErr{gocql.ErrCodeUnavailable}
	errWriteTO     = reqErr{gocql.ErrCodeWriteTimeout}
)

// rowID is a row's primary key.
type rowID struct {
	Key
	ts         int64
	aggregator string
	partition  int
	offset     int64
}

func idOf(r *Row) rowID {
	return rowID{r.Key, r.TS, r.Aggregator, r.Partition, r.Offset}
}

// stored is a row as the fake table holds it.
type stored struct {
	line, raw, source string
	hasRaw            bool
}

// attempt is one WriteBatch call the fake saw.
type attempt struct {
	at      time.Time
	keys    []Key // the distinct keys of the batch: one, unless the sink is broken
	offsets []int64
	size    int
	err     error
}

// fakeSession is a Session in memory. Hooks decide, per call, whether a
// write fails (and how), or blocks until the test releases it or its
// context ends (a timeout, from the sink's side).
type fakeSession struct {
	mu       sync.Mutex
	rows     map[rowID]stored
	writes   int // rows written, overwrites included
	attempts []attempt
	closes   int // sessions closed: the sink does not use one after
	// fail, when set, is asked before every write: a non-nil error fails
	// it (nothing is stored).
	fail func(rows []Row) error
	// gate, when set, is asked before every write: a non-nil channel makes
	// the write wait until it is closed (or ctx ends: ctx.Err()).
	gate func(rows []Row) chan struct{}
	// probeErr is what Probe returns.
	probeErr error
	probes   int
}

func newFake() *fakeSession { return &fakeSession{rows: map[rowID]stored{}} }

func (f *fakeSession) WriteBatch(ctx context.Context, rows []Row) error {
	f.mu.Lock()
	fail, gate := f.fail, f.gate
	f.mu.Unlock()
	a := attempt{at: time.Now()}
	for i := range rows {
		if !slices.Contains(a.keys, rows[i].Key) {
			a.keys = append(a.keys, rows[i].Key)
		}
		a.offsets = append(a.offsets, rows[i].Offset)
		a.size += len(rows[i].Line) + len(rows[i].Raw) + len(rows[i].Source) + len(rows[i].Topic) + len(rows[i].Host) + len(rows[i].Aggregator) + rowOverhead
	}
	var err error
	if gate != nil {
		if ch := gate(rows); ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	}
	if err == nil && fail != nil {
		err = fail(rows)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a.err = err
	f.attempts = append(f.attempts, a)
	if err != nil {
		return err
	}
	for i := range rows {
		r := &rows[i]
		f.rows[idOf(r)] = stored{line: string(r.Line), raw: string(r.Raw), hasRaw: r.Raw != nil, source: r.Source}
		f.writes++
	}
	return nil
}

func (f *fakeSession) Probe(ctx context.Context, k Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.probeErr
}

func (f *fakeSession) Close() {
	f.mu.Lock()
	f.closes++
	f.mu.Unlock()
}

func (f *fakeSession) setFail(fn func(rows []Row) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func (f *fakeSession) setGate(fn func(rows []Row) chan struct{}) {
	f.mu.Lock()
	f.gate = fn
	f.mu.Unlock()
}

func (f *fakeSession) setProbeErr(err error) {
	f.mu.Lock()
	f.probeErr = err
	f.mu.Unlock()
}

// snapshot returns the attempts so far and the stored rows by offset (of
// one aggregator, topic and partition; tests use one at a time unless
// they say otherwise).
func (f *fakeSession) attemptsCopy() []attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts)
}

// byOffset returns the stored rows of a partition by offset; it fails the
// test if an offset is stored under two primary keys.
func (f *fakeSession) byOffset(t testing.TB, agg, topic string, part int) map[int64]stored {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int64]stored{}
	for id, s := range f.rows {
		if id.aggregator != agg || id.Topic != topic || id.partition != part {
			continue
		}
		if _, dup := out[id.offset]; dup {
			t.Fatalf("offset %d stored under two primary keys", id.offset)
		}
		out[id.offset] = s
	}
	return out
}

func (f *fakeSession) rowCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rows)
}

// checkBatches fails the test if any batch the fake was sent had two
// partition keys, or (when max > 0) was above max bytes while holding more
// than one row.
func checkBatches(t testing.TB, f *fakeSession, max int) {
	t.Helper()
	for i, a := range f.attemptsCopy() {
		if len(a.keys) != 1 {
			t.Fatalf("batch %d (offsets %v) spans %d partition keys: %v", i, a.offsets, len(a.keys), a.keys)
		}
		if max > 0 && len(a.offsets) > 1 && a.size > max {
			t.Fatalf("batch %d (offsets %v) is %d bytes, above batch_max_bytes %d", i, a.offsets, a.size, max)
		}
	}
}

// newTestSink returns a Sink over f with small test settings, closed at
// the end of the test.
func newTestSink(t testing.TB, f *fakeSession, o Options) *Sink {
	t.Helper()
	if o.Name == "" {
		o.Name = "cass"
	}
	if o.Keyspace == "" {
		o.Keyspace = "logship"
	}
	if o.DeadLetterDir == "" {
		o.DeadLetterDir = t.TempDir()
	}
	if o.NewSession == nil {
		o.NewSession = func(context.Context) (Session, error) { return f, nil }
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// open opens the writer of agg-1/app/0.
func open(t testing.TB, s *Sink) sinks.PartitionWriter {
	t.Helper()
	w, next, err := s.Open(t.Context(), sinks.Partition{Aggregator: "agg-1", Topic: "app", Partition: 0, Committed: -1})
	if err != nil {
		t.Fatal(err)
	}
	if next != -1 {
		t.Fatalf("Open returned %d, want -1: the sink keeps no position", next)
	}
	return w
}

// rec is a record of agg-1/app/0 at offset, read on host at t seconds.
func rec(offset int64, host string, sec float64, data string) *sinks.Record {
	return &sinks.Record{
		Aggregator: "agg-1", Topic: "app", Partition: 0, Offset: offset,
		Time: int64(sec * 1e9), Host: host, Source: "/var/log/app.log", Data: []byte(data),
	}
}

func write(t testing.TB, w sinks.PartitionWriter, recs ...*sinks.Record) {
	t.Helper()
	for _, r := range recs {
		if err := w.Write(t.Context(), r); err != nil {
			t.Fatalf("write offset %d: %v", r.Offset, err)
		}
	}
}

func tick(t testing.TB, w sinks.PartitionWriter) int64 {
	t.Helper()
	off, err := w.Tick(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return off
}
