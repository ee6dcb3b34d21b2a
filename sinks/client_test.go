package sinks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"logship/sinks"
	"logship/sinks/internal/sinktest"
)

func TestClient(t *testing.T) {
	ctx := context.Background()
	a := startAgg(t, aggID, "127.0.0.1:0")
	fill(t, a, "app", 2, 0, 10, 5)
	a.Truncate("app", 2, 5)
	c, err := sinks.Dial(ctx, a.Addr(), sinkName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Aggregator() != aggID {
		t.Fatalf("aggregator %q", c.Aggregator())
	}

	parts, err := c.Metadata(ctx, []string{"app"})
	if err != nil || len(parts) != 1 || parts[0].Partition != 2 || parts[0].Start != 5 || parts[0].End != 10 {
		t.Fatalf("metadata %+v, %v", parts, err)
	}

	res, err := c.Fetch(ctx, "app", 2, 7, 1<<20, 0)
	if err != nil || len(res.Batches) == 0 || res.Start != 5 || res.End != 10 {
		t.Fatalf("fetch: %+v, %v", res, err)
	}

	var oor *sinks.OutOfRangeError
	if _, err := c.Fetch(ctx, "app", 2, 3, 1<<20, 0); !errors.As(err, &oor) || oor.Start != 5 || oor.End != 10 || oor.Offset != 3 {
		t.Fatalf("fetch below start: %v", err)
	}
	if _, err := c.Fetch(ctx, "app", 2, 11, 1<<20, 0); !errors.As(err, &oor) || oor.Offset != 11 {
		t.Fatalf("fetch above end: %v", err)
	}
	if _, err := c.Fetch(ctx, "nope", 0, 0, 1<<20, 0); !errors.Is(err, sinks.ErrUnknownPartition) {
		t.Fatalf("fetch of an unknown partition: %v", err)
	}

	if err := c.Commit(ctx, sinkName, "app", 2, 8, 0); err != nil {
		t.Fatal(err)
	}
	got, err := c.Committed(ctx, sinkName, "app")
	if err != nil || len(got) != 1 || got[2] != (sinks.Committed{Offset: 8}) {
		t.Fatalf("committed %v, %v", got, err)
	}
	if err := c.Reset(ctx, sinkName, "app", 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, sinkName, "app", 2, 9, 0); !errors.Is(err, sinks.ErrOffsetReset) {
		t.Fatalf("commit under a stale epoch: %v", err)
	}
	got, err = c.Committed(ctx, sinkName, "app")
	if err != nil || got[2] != (sinks.Committed{Offset: 3, Epoch: 1}) {
		t.Fatalf("committed after reset %v, %v", got, err)
	}
	a.SetCommitHook(func(string, string, int, int64) bool { return false })
	if err := c.Commit(ctx, sinkName, "app", 2, 9, 1); !errors.Is(err, sinks.ErrCommitRefused) {
		t.Fatalf("refused commit: %v", err)
	}
	// A refusal leaves the connection usable.
	if _, err := c.Metadata(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// TestClientCancelDuringLongPoll: a cancelled ctx ends a long poll at once,
// and the connection, left mid-request, refuses further use.
func TestClientCancelDuringLongPoll(t *testing.T) {
	a := startAgg(t, aggID, "127.0.0.1:0")
	a.AddPartition("app", 0)
	c, err := sinks.Dial(context.Background(), a.Addr(), sinkName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	t0 := time.Now()
	go func() {
		_, err := c.Fetch(ctx, "app", 0, 0, 1<<20, 5*time.Second)
		done <- err
	}()
	sinktest.Eventually(t, wait, "the long poll", func() bool { return a.Fetches() > 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("cancel took %s", d)
	}
	if _, err := c.Metadata(context.Background(), nil); !errors.Is(err, sinks.ErrBroken) {
		t.Fatalf("after a cancelled request: %v", err)
	}
}

func TestDialRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := sinks.Dial(ctx, "127.0.0.1:1", sinkName)
	if err == nil {
		t.Fatal("dial of a closed port succeeded")
	}
	// The error says what failed and where, for callers to put in their
	// own words.
	var op *sinks.OpError
	if !errors.As(err, &op) || op.Op != "connect" || op.Addr != "127.0.0.1:1" || op.Err == nil {
		t.Fatalf("got %T %v, want an *OpError connecting to 127.0.0.1:1", err, err)
	}
}
