//go:build integration

// Integration tests against a real Cassandra: LOGSHIP_TEST_CASSANDRA is
// its host:port; without it they skip. Each test works in a keyspace of
// its own (SimpleStrategy, RF 1) that it drops at the end.
//
//	LOGSHIP_TEST_CASSANDRA=127.0.0.1:9042 go test -tags integration -run Integration -v ./sinks/cassandra/
//	LOGSHIP_TEST_CASSANDRA=127.0.0.1:9042 go test -tags integration -run '^$' -bench Writers -benchtime 200000x ./sinks/cassandra/
package cassandra

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/internal/fakeagg"
	"logship/sinks/internal/sinktest"
)

const itWait = 10 * time.Minute

func cassandraAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("LOGSHIP_TEST_CASSANDRA")
	if addr == "" {
		tb.Skip("LOGSHIP_TEST_CASSANDRA (host:port of a Cassandra) is not set")
	}
	return addr
}

// itOptions returns sink options for a fresh keyspace, created by the
// first session and dropped when the test ends.
func itOptions(tb testing.TB, addr string) Options {
	tb.Helper()
	ks := fmt.Sprintf("logship_it_%d", time.Now().UnixNano()%1e15)
	o := Options{
		Name: "it", Hosts: []string{addr}, Keyspace: ks, CreateSchema: true,
		Replication:   map[string]string{"class": "SimpleStrategy", "replication_factor": "1"},
		DeadLetterDir: tb.TempDir(), Timeout: 30 * time.Second,
	}
	tb.Cleanup(func() {
		s := plainSession(tb, addr, "")
		defer s.Close()
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			tb.Logf("drop keyspace %s: %v", ks, err)
		}
	})
	return o
}

// createSchema creates the options' keyspace and table.
func itCreateSchema(tb testing.TB, o Options) {
	tb.Helper()
	s, err := NewGocqlSession(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	s.Close()
}

func plainSession(tb testing.TB, addr, ks string) *gocql.Session {
	tb.Helper()
	c := gocql.NewCluster(addr)
	c.Keyspace = ks
	c.Timeout = 30 * time.Second
	c.ConnectTimeout = 30 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func itAgg(tb testing.TB) *fakeagg.Server {
	tb.Helper()
	a, err := fakeagg.Start(aggID, "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	return a
}

// itFill appends the test records [from, to) of app/0, 1,000 to a batch.
func itFill(tb testing.TB, a *fakeagg.Server, from, to int64) {
	tb.Helper()
	for o := from; o < to; o += 1000 {
		if _, err := a.Append("app", 0, batch.Zstd, sinktest.Lines("app", 0, o, min(o+1000, to))...); err != nil {
			tb.Fatal(err)
		}
	}
}

func itRun(tb testing.TB, a *fakeagg.Server, s sinks.Sink) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sinks.Run(ctx, sinks.Options{Name: sinkName, Aggregators: []string{a.Addr()}, CloseTimeout: time.Minute}, s)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func itWaitCommitted(tb testing.TB, a *fakeagg.Server, off int64) {
	tb.Helper()
	sinktest.Eventually(tb, itWait, fmt.Sprintf("commit at %d", off), func() bool {
		got, ok := a.Committed(sinkName, "app", 0)
		if !ok || got != off {
			time.Sleep(100 * time.Millisecond)
		}
		return ok && got == off
	})
}

// readBack reads every row of app/0 from host-1 (fakeagg's records: offset
// o is at o seconds) and checks that the offsets [0, n) are there once
// each, with their lines and times, and nothing else. It returns the row
// count.
func readBack(tb testing.TB, o Options, n int64) int64 {
	tb.Helper()
	s := plainSession(tb, o.Hosts[0], o.Keyspace)
	defer s.Close()
	seen := make([]bool, n)
	var rows int64
	bucket := int64(time.Hour / time.Millisecond)
	q := fmt.Sprintf(`SELECT ts, aggregator, "partition", "offset", source, line FROM %s.logs WHERE topic = ? AND host = ? AND bucket = ?`, o.Keyspace)
	for b := int64(0); b*bucket <= (n-1)*1000; b++ {
		it := s.Query(q, "app", "host-1", b*bucket).PageSize(10000).Iter()
		var (
			ts          time.Time
			agg, source string
			part        int
			off         int64
			line        string
		)
		for it.Scan(&ts, &agg, &part, &off, &source, &line) {
			rows++
			if off < 0 || off >= n || agg != aggID || part != 0 {
				tb.Fatalf("unexpected row: %s/%d offset %d", agg, part, off)
			}
			if seen[off] {
				tb.Fatalf("offset %d read twice", off)
			}
			seen[off] = true
			if line != sinktest.Line("app", 0, off) || ts.UnixMilli() != off*1000 || source != "/var/log/app.log" {
				tb.Fatalf("offset %d: ts %v source %q line %q", off, ts, source, line)
			}
		}
		if err := it.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	for o, ok := range seen {
		if !ok {
			tb.Fatalf("offset %d missing", o)
		}
	}
	return rows
}

// TestIntegrationMillionRecords: 1,000,000 records through sinks.Run and
// the sink into Cassandra, read back and compared; then the whole range
// replayed (an operator's reset to 0): the row count does not change.
func TestIntegrationMillionRecords(t *testing.T) {
	addr := cassandraAddr(t)
	const n = 1_000_000
	o := itOptions(t, addr)
	a := itAgg(t)
	itFill(t, a, 0, n)

	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := itRun(t, a, s)
	itWaitCommitted(t, a, n)
	took := time.Since(start)
	stop()
	s.Close()
	st := s.Stats()
	t.Logf("%d records in %s: %.0f rows/s; %d batches, %d retries, errors %v", n, took, n/took.Seconds(), st.Batches, st.Retries, st.Errors)
	if got := readBack(t, o, n); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}

	a.Reset(sinkName, "app", 0, 0)
	o.CreateSchema = false
	s, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop = itRun(t, a, s)
	sinktest.Eventually(t, itWait, "the replay", func() bool {
		time.Sleep(100 * time.Millisecond)
		return s.Stats().Rows >= n
	})
	itWaitCommitted(t, a, n)
	stop()
	s.Close()
	if got := readBack(t, o, n); got != n {
		t.Fatalf("%d rows after the replay, want %d", got, n)
	}
}

// TestIntegrationKillAndRestart: the sink, in a child process, is killed
// (SIGKILL) mid-stream and started again: every record below each commit
// is in Cassandra, and in the end every record is there once.
func TestIntegrationKillAndRestart(t *testing.T) {
	addr := cassandraAddr(t)
	const n = 300_000
	o := itOptions(t, addr)
	itCreateSchema(t, o)
	a := itAgg(t)
	itFill(t, a, 0, n)

	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestIntegrationSinkChild$", "-test.v")
		cmd.Env = append(os.Environ(), "LOGSHIP_IT_CHILD_AGG="+a.Addr(), "LOGSHIP_IT_CHILD_KEYSPACE="+o.Keyspace,
			"LOGSHIP_IT_CHILD_DLQ="+o.DeadLetterDir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := child()
	sinktest.Eventually(t, itWait, "a third of the records committed", func() bool {
		time.Sleep(20 * time.Millisecond)
		off, ok := a.Committed(sinkName, "app", 0)
		return ok && off >= n/3
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	committed, _ := a.Committed(sinkName, "app", 0)
	t.Logf("killed at commit %d", committed)
	// The commit follows the writes: every record below it is there.
	s := plainSession(t, addr, o.Keyspace)
	q := fmt.Sprintf(`SELECT "offset" FROM %s.logs WHERE topic = 'app' AND host = 'host-1' AND bucket = ?`, o.Keyspace)
	have := map[int64]bool{}
	for b := int64(0); b*3600 < committed; b++ {
		it := s.Query(q, b*3600*1000).PageSize(10000).Iter()
		var off int64
		for it.Scan(&off) {
			have[off] = true
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	for off := range committed {
		if !have[off] {
			t.Fatalf("offset %d is below the commit %d but not in Cassandra", off, committed)
		}
	}

	cmd = child()
	itWaitCommitted(t, a, n)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if got := readBack(t, o, n); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
}

// TestIntegrationSinkChild is the sink process of
// TestIntegrationKillAndRestart; it does nothing on its own.
func TestIntegrationSinkChild(t *testing.T) {
	agg := os.Getenv("LOGSHIP_IT_CHILD_AGG")
	if agg == "" {
		t.Skip("run by TestIntegrationKillAndRestart")
	}
	s, err := New(Options{
		Name: "it", Hosts: []string{cassandraAddr(t)}, Keyspace: os.Getenv("LOGSHIP_IT_CHILD_KEYSPACE"),
		DeadLetterDir: os.Getenv("LOGSHIP_IT_CHILD_DLQ"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// SIGTERM ends the test process's Run cleanly; SIGKILL is a crash.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		cancel()
	}()
	if err := sinks.Run(ctx, sinks.Options{Name: sinkName, Aggregators: []string{agg}}, s); err != nil {
		t.Fatal(err)
	}
}

// benchRecords makes n records of app/0 as an agent would send them: runs
// of 100 records of one host among 20, 150-byte lines, 10,000 records a
// second.
func benchRecords(n int) []sinks.Record {
	line := []byte(strings.Repeat("x", 150))
	recs := make([]sinks.Record, n)
	for i := range recs {
		recs[i] = sinks.Record{
			Aggregator: aggID, Topic: "bench", Partition: 0, Offset: int64(i), Time: int64(i) * 1e5,
			Host: fmt.Sprintf("host-%02d", i/100%20), Source: "/var/log/app.log", Data: line,
		}
	}
	return recs
}

// writeWithSink writes recs through a writer of s, ticking every 10,000
// records as the runtime ticks after every fetch, and waits for all.
func writeWithSink(tb testing.TB, s *Sink, recs []sinks.Record) {
	tb.Helper()
	w, _, err := s.Open(context.Background(), sinks.Partition{Aggregator: aggID, Topic: "bench", Committed: -1})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i := range recs {
		if err := w.Write(ctx, &recs[i]); err != nil {
			tb.Fatal(err)
		}
		if i%10000 == 9999 {
			if _, err := w.Tick(ctx, time.Now()); err != nil {
				tb.Fatal(err)
			}
		}
	}
	next, err := w.Close(ctx)
	if err != nil || next != int64(len(recs)) {
		tb.Fatalf("Close: %d, %v", next, err)
	}
}

// writePlain is the baseline: the same rows, grouped the same way (runs
// of one partition key, batches below batchMax), written by conc
// goroutines with plain gocql unlogged batches.
func writePlain(tb testing.TB, o Options, recs []sinks.Record, batchMax, conc int) {
	tb.Helper()
	c, err := cluster(&o, o.Keyspace, &connectDialer{ctx: context.Background(), d: net.Dialer{Timeout: o.Timeout}})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := c.CreateSession()
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	insert := insertCQL(o.Keyspace, o.Table)
	batches := make(chan *gocql.Batch)
	var wg sync.WaitGroup
	var failed sync.Once
	for range conc {
		wg.Go(func() {
			for b := range batches {
				if err := s.ExecuteBatch(b); err != nil {
					failed.Do(func() { tb.Error(err) })
				}
			}
		})
	}
	var b *gocql.Batch
	var key Key
	size := 0
	bucket := time.Hour.Milliseconds()
	for i := range recs {
		r := &recs[i]
		ms := r.Time / 1e6
		k := Key{Topic: r.Topic, Host: r.Host, Bucket: ms / bucket * bucket}
		rs := len(r.Data) + len(r.Source) + len(r.Topic) + len(r.Host) + len(r.Aggregator) + rowOverhead
		if b != nil && (k != key || size+rs > batchMax) {
			batches <- b
			b = nil
		}
		if b == nil {
			b = s.NewBatch(gocql.UnloggedBatch)
			key, size = k, 0
		}
		b.Query(insert, k.Topic, k.Host, k.Bucket, ms, r.Aggregator, r.Partition, r.Offset, r.Source, r.Data, gocql.UnsetValue, 0)
		size += rs
	}
	if b != nil {
		batches <- b
	}
	close(batches)
	wg.Wait()
}

// TestIntegrationThroughput: the sink's rows/s beside the plain gocql
// writer's, in the same run, best of two rounds each. Target: at least 80%.
func TestIntegrationThroughput(t *testing.T) {
	addr := cassandraAddr(t)
	o := itOptions(t, addr)
	itCreateSchema(t, o)
	o.CreateSchema = false
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	recs := benchRecords(300_000)
	var plain, sink float64
	for round := range 2 {
		start := time.Now()
		writePlain(t, o, recs, o.BatchMaxBytes, o.Concurrency)
		plain = max(plain, float64(len(recs))/time.Since(start).Seconds())

		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		writeWithSink(t, s, recs)
		sink = max(sink, float64(len(recs))/time.Since(start).Seconds())
		s.Close()
		t.Logf("round %d: plain gocql %.0f rows/s, sink %.0f rows/s", round, plain, sink)
	}
	t.Logf("sink/plain: %.0f%%", 100*sink/plain)
	if sink < 0.8*plain {
		t.Errorf("the sink writes %.0f rows/s, below 80%% of the plain writer's %.0f", sink, plain)
	}
}

// BenchmarkIntegrationWriters reports rows/s of the plain gocql writer and
// of the sink, b.N rows each, into the same table.
func BenchmarkIntegrationWriters(b *testing.B) {
	addr := cassandraAddr(b)
	o := itOptions(b, addr)
	itCreateSchema(b, o)
	o.CreateSchema = false
	o, err := o.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("writer=plain", func(b *testing.B) {
		recs := benchRecords(b.N)
		b.SetBytes(150)
		b.ReportAllocs()
		b.ResetTimer()
		writePlain(b, o, recs, o.BatchMaxBytes, o.Concurrency)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("writer=sink", func(b *testing.B) {
		recs := benchRecords(b.N)
		s, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.SetBytes(150)
		b.ReportAllocs()
		b.ResetTimer()
		writeWithSink(b, s, recs)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
