package cassandra

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"logship/sinks"
)

// nopSession accepts every batch at once: what is left is the sink's own
// cost per record (copy, grouping, offset tracking, hand-off).
type nopSession struct{}

func (nopSession) WriteBatch(context.Context, []Row) error { return nil }
func (nopSession) Probe(context.Context, Key) error        { return nil }
func (nopSession) Close()                                  {}

// BenchmarkWriter: records through a writer into a session that does
// nothing, beside the baseline of copying the same bytes once.
func BenchmarkWriter(b *testing.B) {
	line := []byte(strings.Repeat("x", 150))
	recs := make([]sinks.Record, 10000)
	for i := range recs {
		recs[i] = sinks.Record{Aggregator: aggID, Topic: "app", Offset: int64(i), Time: int64(i) * 1e5,
			Host: fmt.Sprintf("host-%02d", i/100%20), Source: "/var/log/app.log", Data: line}
	}
	b.Run("writer=sink", func(b *testing.B) {
		s, err := New(Options{Name: "bench", Keyspace: "ks", DeadLetterDir: b.TempDir(),
			NewSession: func(context.Context) (Session, error) { return nopSession{}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		w, _, err := s.Open(context.Background(), sinks.Partition{Aggregator: aggID, Topic: "app", Committed: -1})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := recs[i%len(recs)]
			r.Offset = int64(i)
			if err := w.Write(ctx, &r); err != nil {
				b.Fatal(err)
			}
			if i%10000 == 9999 {
				w.Tick(ctx, time.Now())
			}
		}
		w.Close(ctx)
	})
	b.Run("writer=copy", func(b *testing.B) {
		buf := make([]byte, 0, 64<<10)
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if len(buf)+len(line) > cap(buf) {
				buf = make([]byte, 0, 64<<10)
			}
			buf = append(buf, recs[i%len(recs)].Data...)
		}
	})
}
