package aggregator

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"logship/internal/wire"
	"logship/logstore/batch"
)

func TestDecide(t *testing.T) {
	k := sourceKey{"web-01", 1}
	cases := []struct {
		name       string
		known      bool
		storedEnd  int64
		start, end int64
		resyncing  bool
		want       wire.AckStatus
		gap        bool
	}{
		{name: "new source", start: 0, end: 10, want: wire.AckAppended},
		{name: "new source mid-file", start: 500, end: 510, want: wire.AckAppended},
		{name: "continues", known: true, storedEnd: 100, start: 100, end: 110, want: wire.AckAppended},
		{name: "continues while resyncing", known: true, storedEnd: 100, start: 100, end: 110, resyncing: true, want: wire.AckAppended},
		{name: "same batch", known: true, storedEnd: 100, start: 90, end: 100, want: wire.AckDuplicate},
		{name: "older batch", known: true, storedEnd: 100, start: 0, end: 10, want: wire.AckDuplicate},
		{name: "empty range at end", known: true, storedEnd: 100, start: 100, end: 100, want: wire.AckDuplicate},
		{name: "overlap", known: true, storedEnd: 100, start: 90, end: 110, want: wire.AckResync},
		{name: "gap while resyncing", known: true, storedEnd: 100, start: 120, end: 130, resyncing: true, want: wire.AckResync},
		{name: "gap", known: true, storedEnd: 100, start: 120, end: 130, want: wire.AckAppended, gap: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newDedup(4).topic("app")
			if tc.known {
				ts.set(k, sourceState{partition: 1, storedEnd: tc.storedEnd})
			}
			st, ok := ts.get(k)
			d := decideOn(st, ok, &batch.Header{RangeStart: tc.start, RangeEnd: tc.end}, tc.resyncing)
			if d.status != tc.want || d.gap != tc.gap || d.known != tc.known || d.storedEnd != tc.storedEnd {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

// TestHashPartitionStable pins the partition function: a change would move
// sources that the aggregator has not stored yet (see the package doc).
// The values were computed independently.
func TestHashPartitionStable(t *testing.T) {
	for _, c := range []struct {
		k       sourceKey
		n, want int
	}{
		{sourceKey{"web-01", 1}, 4, 2}, {sourceKey{"web-01", 1}, 1000, 306},
		{sourceKey{"web-01", 42}, 4, 3}, {sourceKey{"web-01", 42}, 1000, 31},
		{sourceKey{"host-7", 1 << 63}, 4, 1}, {sourceKey{"host-7", 1 << 63}, 1000, 561},
		{sourceKey{"", 0}, 4, 3}, {sourceKey{"", 0}, 1000, 599},
	} {
		if got := hashPartition(c.k, c.n); got != c.want {
			t.Errorf("hashPartition(%v, %d) = %d, want %d", c.k, c.n, got, c.want)
		}
	}
}

// TestAppendFailureAcksFailed: when storage fails, the batch is acked
// Failed with the reason, the failure is logged at ERROR, and the
// aggregator reads nothing more from that connection (see
// TestFailedAppendEndsTheSession); the agent retries on a new one.
func TestAppendFailureAcksFailed(t *testing.T) {
	dir := t.TempDir()
	broken := src{"web-01", "app", 1}
	p := hashPartition(sourceKey{broken.agent, broken.id}, 4)
	// A file where the partition's directory should be: creating the
	// partition fails.
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log", "app-"+strconv.Itoa(p)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := start(t, dir, nil)
	a := dialAgent(t, ts.Addr(), "web-01")
	ack := a.produce(mkBatch(t, broken, 0, 10))
	if ack.Status != wire.AckFailed || ack.Message == "" || ack.BaseOffset != -1 {
		t.Fatalf("ack %+v", ack)
	}
	if len(ts.logs.lines("level=ERROR", "append failed", "source=1")) != 1 {
		t.Fatalf("no ERROR line:\n%s", ts.logs)
	}
	a.close()
	// Another source in another partition is stored.
	b := dialAgent(t, ts.Addr(), "web-01")
	for id := uint64(2); ; id++ {
		if hashPartition(sourceKey{"web-01", id}, 4) != p {
			expect(t, b.produce(mkBatch(t, src{"web-01", "app", id}, 0, 10)), wire.AckAppended, 10)
			break
		}
	}
	// Retrying still fails; nothing was recorded as stored.
	if ack := b.produce(mkBatch(t, broken, 0, 10)); ack.Status != wire.AckFailed || !strings.Contains(ack.Message, "app") {
		t.Fatalf("ack %+v", ack)
	}
}

// TestFailedAppendEndsTheSession: the agent pipelines, so when one append
// fails (here a segment roll whose index cannot be written: an error that
// does not poison the partition) the batches it sent behind it must not be
// stored, or the failed range would be left behind as a gap that the
// agent's resend then meets as a duplicate: lost data. The aggregator acks
// Failed and reads nothing more; the resend on a new connection stores the
// range, and the rest follows in order.
func TestFailedAppendEndsTheSession(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir, func(o *Options) { o.Partitions = 1; o.SegmentBytes = 1024 })
	s := src{agent: "web-1", topic: "app", id: 7}

	a := dialAgent(t, ts.Addr(), "web-1")
	expect(t, a.produce(mkBatch(t, s, 0, 10, "b0")), wire.AckAppended, 10)

	unblock := blockFirstRoll(t, dir)

	big := strings.Repeat("B", 1500) // needs a roll
	a.send(mkBatch(t, s, 10, 1511, big))
	a.send(mkBatch(t, s, 1511, 1520, "after")) // pipelined behind it
	if ack, err := a.readAck(); err != nil || ack.Status != wire.AckFailed {
		t.Fatalf("first ack %+v, %v; want Failed", ack, err)
	}
	a.close()

	unblock()
	b := dialAgent(t, ts.Addr(), "web-1")
	expect(t, b.produce(mkBatch(t, s, 10, 1511, big)), wire.AckAppended, 1511)
	expect(t, b.produce(mkBatch(t, s, 1511, 1520, "after")), wire.AckAppended, 1520)

	var got []string
	for _, st := range dialConsumer(t, ts.Addr()).readAll("app", 0) {
		for _, r := range st.records {
			got = append(got, r[:min(len(r), 4)])
		}
	}
	if want := []string{"b0", "BBBB", "afte"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored %q, want %q", got, want)
	}
}
