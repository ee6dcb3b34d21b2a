package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gocql/gocql"

	"logship/sinks"
)

// TestBatchesByPartitionKeyAndSize: every batch holds rows of one
// partition key, below batch_max_bytes unless it is one larger record, and
// every record is written once, with its data.
func TestBatchesByPartitionKeyAndSize(t *testing.T) {
	type input struct {
		recs []*sinks.Record
		// batches is the number of batches expected, 0 for any.
		batches int
	}
	const max = 1000
	data := strings.Repeat("x", 100) // rowSize 205: 4 rows a batch
	cases := map[string]func() input{
		"interleaved hosts": func() input {
			var in input
			for o := range int64(300) {
				in.recs = append(in.recs, rec(o, string(rune('a'+o%3)), 10, data))
			}
			in.batches = 75 // 100 rows of each host, 4 a batch, none left over
			return in
		},
		"bucket boundaries": func() input {
			var in input
			for o := range int64(12) {
				in.recs = append(in.recs, rec(o, "a", 3598+float64(o)*0.5, data)) // 3598..3603.5
			}
			in.batches = 3 // 4 rows before 3600s (1 batch), 8 after (2)
			return in
		},
		"one record above batch_max_bytes": func() input {
			return input{recs: []*sinks.Record{
				rec(0, "a", 1, data), rec(1, "a", 1, strings.Repeat("y", 3*max)), rec(2, "a", 1, data),
			}, batches: 3}
		},
		"random": func() input {
			rng := rand.New(rand.NewPCG(1, 2))
			var in input
			for o := range int64(2000) {
				sec := float64(rng.IntN(3*3600)) + rng.Float64()
				in.recs = append(in.recs, rec(o, fmt.Sprintf("h%d", rng.IntN(5)), sec, strings.Repeat("z", rng.IntN(600))))
			}
			return in
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			in := mk()
			f := newFake()
			s := newTestSink(t, f, Options{BatchMaxBytes: max})
			w := open(t, s)
			write(t, w, in.recs...)
			next, err := w.Close(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(in.recs)); next != want {
				t.Fatalf("Close returned %d, want %d", next, want)
			}
			checkBatches(t, f, max)
			if n := len(f.attemptsCopy()); in.batches > 0 && n != in.batches {
				t.Fatalf("%d batches, want %d", n, in.batches)
			}
			got := f.byOffset(t, "agg-1", "app", 0)
			if len(got) != len(in.recs) {
				t.Fatalf("%d rows stored, want %d", len(got), len(in.recs))
			}
			for _, r := range in.recs {
				if got[r.Offset].line != string(r.Data) {
					t.Fatalf("offset %d: line %.20q, want %.20q", r.Offset, got[r.Offset].line, r.Data)
				}
			}
		})
	}
}

// TestRowKeyAndColumns: the primary key comes from the record alone (a
// replay maps to the same row), and a record that is not UTF-8 keeps its
// exact bytes in raw.
func TestRowKeyAndColumns(t *testing.T) {
	f := newFake()
	s := newTestSink(t, f, Options{Bucket: 5 * time.Minute})
	w := open(t, s)
	bad := rec(1, "web-1", 601.25, "ok\xff\xfeok")
	bad.Source = "/var/log/\xffapp.log"
	write(t, w, rec(0, "web-1", -0.5, "before 1970"), bad)
	if _, err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[rowID]stored{
		{Key{"app", "web-1", -300000}, -500, "agg-1", 0, 0}: {line: "before 1970", source: "/var/log/app.log"},
		{Key{"app", "web-1", 600000}, 601250, "agg-1", 0, 1}: {
			line: "ok\uFFFD\uFFFDok", raw: "ok\xff\xfeok", hasRaw: true, source: "/var/log/\uFFFDapp.log",
		},
	}
	if len(f.rows) != len(want) {
		t.Fatalf("rows: %v\nwant %v", f.rows, want)
	}
	for id, w := range want {
		if got, ok := f.rows[id]; !ok || got != w {
			t.Fatalf("row %+v: %+v (present %v), want %+v\nall: %v", id, got, ok, w, f.rows)
		}
	}
}

// TestCommitNeverPassesAHole: batches complete out of order; Tick reports
// only the prefix below the first record whose batch is not written.
func TestCommitNeverPassesAHole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		gates := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{}), "c": make(chan struct{})}
		f.setGate(func(rows []Row) chan struct{} { return gates[rows[0].Host] })
		s := newTestSink(t, f, Options{Concurrency: 4})
		w := open(t, s)
		// Offsets 0..5 on hosts a b c a b c: three batches, each two runs.
		for o := range int64(6) {
			write(t, w, rec(o, string(rune('a'+o%3)), 1, "line"))
		}
		steps := []struct {
			release string
			want    int64
		}{
			{"", -1},
			{"c", -1}, // 2 and 5 written; 0 is not
			{"a", 1},  // 0, 2, 3, 5 written: 1 is not
			{"b", 6},
		}
		for _, st := range steps {
			if st.release != "" {
				close(gates[st.release])
			}
			synctest.Wait()
			if got := tick(t, w); got != st.want {
				t.Fatalf("after releasing %q: Tick returned %d, want %d", st.release, got, st.want)
			}
		}
		if got := tick(t, w); got != -1 {
			t.Fatalf("Tick with nothing new returned %d, want -1", got)
		}
		if next, err := w.Close(t.Context()); err != nil || next != -1 {
			t.Fatalf("Close: %d, %v; want -1, nil", next, err)
		}
	})
}

// TestRetriesWithBackoff: timeouts are retried after exponentially
// growing, jittered waits, each retry counted.
func TestRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		failures := 7
		f.setFail(func([]Row) error {
			if failures > 0 {
				failures--
				return errWriteTO
			}
			return nil
		})
		s := newTestSink(t, f, Options{RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "line"))
		if got := tick(t, w); got != -1 {
			t.Fatalf("Tick before the write succeeded: %d", got)
		}
		time.Sleep(time.Minute)
		if got := tick(t, w); got != 1 {
			t.Fatalf("Tick after the retries: %d, want 1", got)
		}
		as := f.attemptsCopy()
		if len(as) != 8 {
			t.Fatalf("%d attempts, want 8", len(as))
		}
		step := 100 * time.Millisecond
		for i := 1; i < len(as); i++ {
			gap := as[i].at.Sub(as[i-1].at)
			if gap < step/2 || gap > step {
				t.Fatalf("wait before retry %d: %s, want %s to %s", i, gap, step/2, step)
			}
			step = min(2*step, time.Second)
		}
		st := s.Stats()
		if st.Retries != 7 || st.Errors["timeout"] != 7 || st.Writes != 8 || st.Batches != 1 || st.Rows != 1 {
			t.Fatalf("stats %+v: want 7 retries, 7 timeouts, 8 writes, 1 batch, 1 row", st)
		}
	})
}

// TestRetriesForeverByDefault: any number of transient failures, of every
// transient kind, ends in the write.
func TestRetriesForeverByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		errs := []error{errUnavailable, errWriteTO, reqErr{0x1001}, context.DeadlineExceeded, fmt.Errorf("wrapped: %w", errUnavailable)}
		n := 0
		f.setFail(func([]Row) error {
			if n < 1000 {
				n++
				return errs[n%len(errs)]
			}
			return nil
		})
		s := newTestSink(t, f, Options{})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "line"))
		tick(t, w)
		time.Sleep(1000 * DefaultRetryMax)
		if got := tick(t, w); got != 1 {
			t.Fatalf("Tick after 1000 failures: %d, want 1", got)
		}
		st := s.Stats()
		if st.Retries != 1000 || st.Errors["unavailable"] != 400 || st.Errors["timeout"] != 400 || st.Errors["overloaded"] != 200 {
			t.Fatalf("stats %+v", st)
		}
		if st.DeadLetters != 0 {
			t.Fatalf("%d dead letters, want none", st.DeadLetters)
		}
	})
}

// TestShutdownDuringRetries: Close waits for a batch that keeps failing
// only until its context ends, returns the prefix written before it, and
// the sink's goroutines stop.
func TestShutdownDuringRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func(rows []Row) error {
			if rows[0].Host == "b" {
				return errUnavailable
			}
			return nil
		})
		s := newTestSink(t, f, Options{})
		w := open(t, s)
		for o := range int64(15) {
			host := "a"
			if o >= 5 && o < 10 {
				host = "b"
			}
			write(t, w, rec(o, host, 1, "line"))
		}
		first := tick(t, w) // sends the batches; may see the first written
		time.Sleep(time.Minute)
		if got := max(first, tick(t, w)); got != 5 {
			t.Fatalf("Tick: %d, want 5 (offset 5 is on the failing host)", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		next, err := w.Close(ctx)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Close took %s, beyond its context's 5s", took)
		}
		if err == nil || next != -1 {
			t.Fatalf("Close: %d, %v; want -1 (5 was reported) and an error", next, err)
		}
		s.Close()
		synctest.Wait()
		if st := s.Stats(); st.InFlight != 0 || st.Rows != 10 {
			t.Fatalf("stats after Close: %+v; want nothing in flight, 10 rows", st)
		}
		// The writer's batch gave up; nothing of host b was written.
		if rows := f.byOffset(t, "agg-1", "app", 0); len(rows) != 10 {
			t.Fatalf("%d rows, want 10", len(rows))
		}
	})
}

// TestWriteBlocksOnlyWhenAllBusy: Write hands a full batch to the sink's
// goroutines and waits only when all of them are busy; its context ends
// the wait.
func TestWriteBlocksOnlyWhenAllBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		gate := make(chan struct{})
		f.setGate(func([]Row) chan struct{} { return gate })
		// Each record fills a batch: the next one sends it.
		s := newTestSink(t, f, Options{Concurrency: 2, BatchMaxBytes: 200})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "line"), rec(1, "a", 1, "line"), rec(2, "a", 1, "line")) // two batches sent
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- w.Write(ctx, rec(3, "a", 1, "line")) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Write returned (%v) with both goroutines busy", err)
		default:
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Write after its context ended: %v", err)
		}
		close(gate)
		// The writer failed: the runtime would close it. The batch that
		// could not be sent holds offset 2: the prefix stops there.
		next, err := w.Close(t.Context())
		if err != nil || next != 2 {
			t.Fatalf("Close: %d, %v; want 2, nil", next, err)
		}
	})
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want kind
	}{
		{errWriteTO, kindTimeout},
		{reqErr{0x1200}, kindTimeout},
		{errUnavailable, kindUnavailable},
		{reqErr{0x1002}, kindUnavailable},
		{reqErr{0x1001}, kindOverloaded},
		{errInvalid, kindRejected},
		{fmt.Errorf("batch: %w", errInvalid), kindRejected},
		{reqErr{0x2100}, kindConfig},
		{reqErr{0x2000}, kindConfig},
		{reqErr{0x0000}, kindOther},
		{reqErr{0x1500}, kindOther},
		{context.DeadlineExceeded, kindTimeout},
		{fmt.Errorf("x: %w", gocql.ErrTimeoutNoResponse), kindTimeout},
		{gocql.ErrNoConnections, kindConnection},
		{gocql.MarshalError("cannot marshal"), kindRejected},
		{fmt.Errorf("something new"), kindOther},
	}
	for _, c := range cases {
		t.Run(c.err.Error(), func(t *testing.T) {
			if got := classify(c.err); got != c.want {
				t.Fatalf("classify(%v) = %s, want %s", c.err, got, c.want)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	good := Options{Name: "c", Hosts: []string{"h"}, Keyspace: "ks", DeadLetterDir: "/tmp/x"}
	cases := []struct {
		name string
		edit func(o *Options)
		want string // in the error; "" for none
	}{
		{"good", func(*Options) {}, ""},
		{"no hosts", func(o *Options) { o.Hosts = nil }, "no hosts"},
		{"keyspace", func(o *Options) { o.Keyspace = "Logs" }, `keyspace "Logs"`},
		{"table", func(o *Options) { o.Table = "a;drop" }, `table "a;drop"`},
		{"consistency", func(o *Options) { o.Consistency = "MOST" }, `consistency "MOST"`},
		{"ttl", func(o *Options) { o.TTL = 1500 * time.Millisecond }, "ttl 1.5s"},
		{"replication", func(o *Options) { o.CreateSchema = true }, "replication class"},
		{"replication value", func(o *Options) {
			o.CreateSchema = true
			o.Replication = map[string]string{"class": "SimpleStrategy", "replication_factor": "1'}"}
		}, "replication"},
		{"dead letters", func(o *Options) { o.DeadLetterDir = "" }, "dead-letter"},
		{"bucket", func(o *Options) { o.Bucket = time.Millisecond }, "bucket"},
		{"retry", func(o *Options) { o.RetryMin, o.RetryMax = time.Minute, time.Second }, "retry max"},
		{"reserved table", func(o *Options) { o.Table = "table" }, `table "table": a reserved CQL keyword`},
		{"reserved keyspace", func(o *Options) { o.Keyspace = "select" }, `keyspace "select"`},
		{"ttl past 2038", func(o *Options) { o.TTL = 15 * 365 * 24 * time.Hour }, "2038-01-19"},
		{"batch above a mutation", func(o *Options) { o.BatchMaxBytes = 16 << 20 }, "batch max bytes"},
		{"record above a mutation", func(o *Options) { o.MaxRecordBytes = 32 << 20 }, "max record bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := good
			c.edit(&o)
			got, err := o.withDefaults()
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want == "":
				if got.Consistency != "LOCAL_QUORUM" || got.Bucket != time.Hour || got.Table != "logs" || got.Concurrency != DefaultConcurrency {
					t.Fatalf("defaults not applied: %+v", got)
				}
			case err == nil || !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}

func TestSchemaCQL(t *testing.T) {
	got := KeyspaceCQL("logship", map[string]string{"class": "NetworkTopologyStrategy", "dc2": "2", "dc1": "3"})
	want := "CREATE KEYSPACE IF NOT EXISTS \"logship\" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '2'}"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if tc := TableCQL("logship", "logs"); !strings.Contains(tc, `PRIMARY KEY ((topic, host, bucket), ts, aggregator, "partition", "offset")`) {
		t.Fatalf("table CQL without the documented key:\n%s", tc)
	}
	// Names are quoted in every statement: a keyword stays a name.
	for _, stmt := range []string{TableCQL("ks", "logs"), insertCQL("ks", "logs"), probeCQL("ks", "logs")} {
		if !strings.Contains(stmt, `"ks"."logs"`) {
			t.Fatalf("names not quoted: %s", stmt)
		}
	}
}

func TestCheckTTL(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	last := time.Unix(MaxExpiryUnix, 0).Add(-ttlMargin)
	for _, c := range []struct {
		ttl time.Duration
		ok  bool
	}{
		{0, true},
		{30 * 24 * time.Hour, true},
		{last.Sub(now).Truncate(time.Second), true},
		{last.Sub(now).Truncate(time.Second) + time.Second, false},
		{MaxTTL, false},
		{time.Second / 2, false},
	} {
		if err := checkTTL(c.ttl, now); (err == nil) != c.ok {
			t.Errorf("checkTTL(%s): %v, want ok %v", c.ttl, err, c.ok)
		}
	}
}

// TestOpenConnects: Open connects once, in the background; a failed
// attempt is tried again by the next Open, and an Open whose context ends
// while the cluster does not answer returns at once.
func TestOpenConnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		var attempts atomic.Int32
		s := newTestSink(t, f, Options{NewSession: func(ctx context.Context) (Session, error) {
			switch attempts.Add(1) {
			case 1:
				return nil, gocql.ErrNoConnectionsStarted
			case 2:
				<-ctx.Done() // a cluster that does not answer, until the sink closes
				return nil, ctx.Err()
			}
			return f, nil
		}})
		p := sinks.Partition{Aggregator: "agg-1", Topic: "app", Committed: -1}
		if _, _, err := s.Open(t.Context(), p); !errors.Is(err, gocql.ErrNoConnectionsStarted) {
			t.Fatalf("first Open: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		start := time.Now()
		if _, _, err := s.Open(ctx, p); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("Open while connecting: %v after %s", err, time.Since(start))
		}
		cancel()
		// The attempt under way is shared, not repeated.
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		s.Open(ctx, p)
		cancel()
		if n := attempts.Load(); n != 2 {
			t.Fatalf("%d connection attempts, want 2", n)
		}
		s.Close() // ends the hanging attempt
		if _, _, err := s.Open(t.Context(), p); !errors.Is(err, errClosed) {
			t.Fatalf("Open after Close: %v", err)
		}
	})
}

// TestStuckBatchBoundsMemory: one batch whose partition key keeps failing
// (replicas of one token range unavailable, say) holds the commit back,
// which is right, while the writer goes on writing the other keys behind
// it. What it remembers of them must not grow with every record: runs
// already written are merged (writer.compact), so segs stays bounded by
// the open and unfinished batches.
func TestStuckBatchBoundsMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		stuck := make(chan struct{})
		f.setGate(func(rows []Row) chan struct{} {
			if rows[0].Host == "stuck" {
				return stuck // never answers until the end of the test
			}
			return nil
		})
		s := newTestSink(t, f, Options{Concurrency: 4})
		w := open(t, s)
		ww := w.(*writer)
		write(t, w, rec(0, "stuck", 1, "line"))
		tick(t, w)

		const n = 100_000
		const bound = 16_384 // generous: any fixed bound would do (about 1,000 runs here)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		accepted := int64(0)
		for o := int64(1); o <= n; o++ {
			host := "a"
			if o%2 == 0 {
				host = "b"
			}
			// Write may wait for the writer's unfinished batches; a
			// context that ends keeps the test from hanging.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			err := w.Write(ctx, rec(o, host, 2, "line"))
			cancel()
			if err != nil {
				break
			}
			accepted++
			if o%1000 == 0 {
				if got := tick(t, w); got != -1 {
					t.Fatalf("Tick reported %d while offset 0 is not written", got)
				}
				synctest.Wait()
			}
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		segs := len(ww.segs)
		retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("accepted %d records behind a stuck batch; %d runs held; heap grew %d bytes (%.0f B/record)",
			accepted, segs, retained, float64(retained)/float64(max(accepted, 1)))
		close(stuck)
		synctest.Wait()
		if next, err := w.Close(t.Context()); err != nil || next != n+1 {
			t.Errorf("Close: %d, %v; want %d, nil", next, err, n+1)
		}
		if segs > bound {
			t.Fatalf("writer holds %d unreported runs (%d records accepted) behind one stuck batch: unbounded, want at most %d",
				segs, accepted, bound)
		}
	})
}

// TestFailingKeyDoesNotStallOthers: a batch waiting out a backoff holds
// none of the sink's Concurrency goroutines (it is parked in the retry
// queue). Otherwise one partition key whose writes keep failing (one
// token range unavailable, one oversized partition timing out) would take
// every goroutine, one batch at a time, and every other partition of the
// sink, whose writes would succeed, would wait too.
func TestFailingKeyDoesNotStallOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func(rows []Row) error {
			if rows[0].Host == "bad" {
				return errUnavailable
			}
			return nil
		})
		s := newTestSink(t, f, Options{Concurrency: 2, BatchMaxBytes: 200})
		a := open(t, s)
		// Each record fills a batch: two batches of host "bad" in flight.
		write(t, a, rec(0, "bad", 1, "line"), rec(1, "bad", 1, "line"), rec(2, "bad", 1, "line"))
		synctest.Wait()

		b, _, err := s.Open(t.Context(), sinks.Partition{Aggregator: "agg-1", Topic: "app", Partition: 1, Committed: -1})
		if err != nil {
			t.Fatal(err)
		}
		good := func(o int64) *sinks.Record {
			r := rec(o, "good", 1, "line")
			r.Partition = 1
			return r
		}
		write(t, b, good(0))
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		err = b.Write(ctx, good(1)) // sends the batch of offset 0
		if err == nil {
			err = func() error { _, err := b.Tick(ctx, time.Now()); return err }()
		}
		if err != nil {
			t.Errorf("partition 1 (every write would succeed) waited an hour behind partition 0's failing key: %v", err)
		}
		closeCtx, cancelClose := context.WithTimeout(t.Context(), time.Second)
		defer cancelClose()
		a.Close(closeCtx)
		b.Close(closeCtx)
	})
}
