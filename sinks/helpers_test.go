package sinks_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/file"
	"logship/sinks/internal/fakeagg"
	"logship/sinks/internal/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	sinkName = "local-file"
	aggID    = "agg-1"
	wait     = 10 * time.Second // deadline of every poll
)

func startAgg(t *testing.T, id, addr string) *fakeagg.Server {
	t.Helper()
	s, err := fakeagg.Start(id, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fill appends the test records [from, to) of a partition, perBatch to a
// batch, cycling through the codecs.
func fill(t *testing.T, a *fakeagg.Server, topic string, part int, from, to int64, perBatch int) {
	t.Helper()
	codecs := []batch.Compression{batch.Zstd, batch.None, batch.S2}
	for o := from; o < to; o += int64(perBatch) {
		end := min(o+int64(perBatch), to)
		base, err := a.Append(topic, part, codecs[int(o/int64(perBatch))%3], sinktest.Lines(topic, part, o, end)...)
		if err != nil {
			t.Fatal(err)
		}
		if base != o {
			t.Fatalf("appended at %d, want %d", base, o)
		}
	}
}

// runner is a Run in the background.
type runner struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// start runs sinks.Run with opts (fast test defaults filled in) and s.
func start(t *testing.T, opts sinks.Options, s sinks.Sink) *runner {
	t.Helper()
	if opts.Name == "" {
		opts.Name = sinkName
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 20 * time.Millisecond
	}
	if opts.MetadataInterval == 0 {
		opts.MetadataInterval = 50 * time.Millisecond
	}
	if opts.CloseTimeout == 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- sinks.Run(ctx, opts, s) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the Run and returns its error.
func (r *runner) stop() error {
	if r.ended {
		return r.err
	}
	r.cancel()
	select {
	case r.err = <-r.done:
	case <-time.After(wait):
		r.t.Fatal("Run did not return after its context was cancelled")
	}
	r.ended = true
	return r.err
}

// fileSink is a file sink over the local filesystem with fast roll settings.
func fileSink(t *testing.T, o file.Options) *file.Sink {
	t.Helper()
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 50 * time.Millisecond
	}
	s, err := file.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func osRead(name string) ([]byte, error) { return os.ReadFile(filepath.FromSlash(name)) }

// published returns what dir holds for a partition, on the local filesystem.
func published(t *testing.T, dir, agg, topic string, part int) []sinktest.Record {
	t.Helper()
	return sinktest.Published(t, file.OSFS{}, osRead, dir, topic, agg, part)
}

// waitPublished polls until the partition's published files end at next.
func waitPublished(t *testing.T, fsys file.FS, read sinktest.ReadFunc, dir, agg, topic string, part int, next int64) []sinktest.Record {
	t.Helper()
	var recs []sinktest.Record
	sinktest.Eventually(t, wait, "records published", func() bool {
		recs = sinktest.Published(t, fsys, read, dir, topic, agg, part)
		return len(recs) > 0 && recs[len(recs)-1].Offset == next-1
	})
	return recs
}

func waitCommitted(t *testing.T, a *fakeagg.Server, topic string, part int, off int64) {
	t.Helper()
	sinktest.Eventually(t, wait, "commit", func() bool {
		got, ok := a.Committed(sinkName, topic, part)
		return ok && got == off
	})
}

func logger(t *testing.T) (*sinktest.Log, *slog.Logger) { return sinktest.New(t) }

var errTest = errors.New("test")
