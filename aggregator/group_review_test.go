package aggregator

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"logship/internal/wire"
)

// Tests of grouped appends, found in review.

// An appender that has appended a batch keeps nothing of it: the frame's
// buffer goes back to the pool once appended, "so an idle connection holds
// no large buffer" (doc.go). Otherwise every connection would keep the
// buffers of the last group it appended (produce's scratch), up to
// maxGroup of them and each up to MaxFrameBytes, for as long as it lives.
func TestAppenderKeepsNoBatchBuffer(t *testing.T) {
	ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	a := groupConn(ts)
	a.acks = newQueue[ack](ackQueue, 0, 1)
	a.entry = ts.agents.add("a1", "test", time.Now())
	defer ts.agents.remove(a.entry)

	gone := func() weak.Pointer[byte] {
		frames := groupFrames(t, groupCases()[:3])
		wp := weak.Make(&frames[1].b[0])
		// As appendLoop does: the group in a.group, handled, then cleared.
		group := append(a.group[:0], frames...)
		a.handleProduce(group, 0)
		clear(group)
		a.group = group[:0]
		return wp
	}()
	for range a.acks.n {
		a.acks.get()
	}
	runtime.GC()
	runtime.GC()
	if gone.Value() != nil {
		t.Errorf("after the append, the connection still holds the batch's buffer (scratch.bs %d entries, %d non-nil)",
			len(a.scratch.bs), nonNil(a.scratch.bs))
	}
}

func nonNil(bs [][]byte) (n int) {
	for _, b := range bs {
		if b != nil {
			n++
		}
	}
	return n
}

// The read-ahead bound: "its queue takes frames while their buffers hold
// less than 1 MiB, so it holds at most 1 MiB plus two frames" (doc.go,
// "Memory per connection"; agent.go, readAheadBytes). The appender takes
// a whole group of frames out of the queue before it appends them: they
// must still count, or while the group is being appended (here slowly:
// the partition's append lock is held by someone else, as another
// connection appending to it would) the reader reads another 1 MiB.
func TestGroupKeepsReadAheadBound(t *testing.T) {
	ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	openIdle(t, ts.Addr(), 0, true)
	release := make(chan struct{})
	var calls atomic.Int64
	ts.Server.beforeTakeHook = func(string) {
		if calls.Add(1) == 1 { // the first take: wait until the queue is full
			<-release
		}
	}
	unhold := holdAppends(t, ts, "app", 0)

	s := src{agent: "a1", topic: "app", id: 1}
	const frames = 40
	var out []byte
	frameLen := 0
	for i := range frames {
		f := produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), 40<<10) // a 64 KiB pooled buffer each
		if frameLen == 0 {
			frameLen = len(f)
		}
		if len(f) != frameLen {
			t.Fatalf("frame %d: %d bytes, frame 0 %d", i, len(f), frameLen)
		}
		out = append(out, f...)
	}
	ag := dialAgent(t, ts.Addr(), "a1")
	before := ts.Stats().WireBytesIn
	read := func() int64 { return (ts.Stats().WireBytesIn - before) / int64(frameLen) }
	werr := writeInBackground(ag.c.NetConn(), out, false)

	waitUntil(t, func() bool { return read() >= readAheadFrames }) // the queue is full: the reader waits for room
	close(release)
	// The appender takes its group and waits for the append lock; the
	// reader reads until the queue is full again and waits for room.
	const bound = readAheadFrames + 2 // 1 MiB of 64 KiB buffers, plus two frames
	waitUntil(t, func() bool { return read() > bound || settled() })
	if n := read(); n > bound {
		t.Errorf("with one append in progress the connection read %d frames of 64 KiB buffers it has not appended (%d KiB); want at most 1 MiB plus two frames (%d)",
			n, n*64, bound)
	}

	unhold()
	for range frames {
		ack, err := ag.readAck()
		if err != nil {
			t.Fatal(err)
		}
		if ack.Status != wire.AckAppended {
			t.Fatalf("ack %+v", ack)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// settled reports whether the appender waits for an append lock in
// produce and the reader waits for room in the read-ahead queue.
func settled() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	appender, reader := false, false
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		switch {
		case strings.Contains(g, "(*agentConn).produce") && strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(head, "sync.Mutex.Lock"):
			appender = true
		case strings.Contains(g, "(*agentConn).readAhead") && strings.Contains(g, "waitRoomLocked") && strings.Contains(head, "[chan receive"):
			reader = true
		}
	}
	return appender && reader
}

// After a Failed append the connection drops the frames behind it, also
// those of its group, uncounted: BatchesIn (and the agent's status:
// batches, bytes, rate) counts only what was appended or decided, as when
// the batches come one at a time.
func TestFailedGroupCountsOnlyDecided(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, dir, func(o *Options) { o.Partitions = 1; o.SegmentBytes = 64 << 10 })
	openIdle(t, ts.Addr(), 0, true)
	release := make(chan struct{})
	var calls atomic.Int64
	ts.Server.beforeTakeHook = func(string) {
		if calls.Add(1) == 2 { // the take after the first batch: wait until the next ones are queued
			<-release
		}
	}
	s := src{agent: "web-1", topic: "app", id: 7}
	a := dialAgent(t, ts.Addr(), s.agent)
	appendFirst(t, a, s)
	blockFirstRoll(t, dir)

	// The batch whose append fails (it needs a roll), then two more.
	out := produceFrame(t, s, 2, 10, 20, 70<<10)
	out = append(out, produceFrame(t, s, 3, 20, 30, 1<<10)...)
	out = append(out, produceFrame(t, s, 4, 30, 40, 1<<10)...)
	before := ts.Stats().WireBytesIn
	werr := writeInBackground(a.c.NetConn(), out, true)
	waitUntil(t, func() bool { return ts.Stats().WireBytesIn-before >= int64(len(out)) })
	close(release)
	ack, err := a.readAck()
	if err != nil || ack.Seq != 2 || ack.Status != wire.AckFailed {
		t.Fatalf("ack %+v, %v; want seq 2 Failed", ack, err)
	}
	<-werr
	a.close()
	waitUntil(t, func() bool { return ts.Stats().OpenAgents == 0 })
	if st := ts.Stats(); st.BatchesIn != 2 {
		t.Errorf("BatchesIn %d after the first batch and a Failed one; want 2 (the batches dropped behind the Failed one are not counted one at a time)", st.BatchesIn)
	}
}

// The frames connections that are not pipelined gather are bounded server
// wide (Server.gatherBudget), not only per connection: while their appends
// wait (here for the partition's append lock, as behind other connections
// appending to it), each keeps the frame it read, and gathers more only
// while the total is under the budget. A review found that without it
// every connection kept what its socket held, up to 1 MiB, however many
// connections there were. Here the budget is one byte: none gathers a
// second frame.
func TestGatherKeepsServerWideBound(t *testing.T) {
	ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	ts.Server.gatherBudget = 1
	openIdle(t, ts.Addr(), agentModes[1].idle, false)
	unhold := holdAppends(t, ts, "app", 0)
	const conns, frames = 12, 16
	var ags []*agentClient
	var werrs []<-chan error
	frameLen := 0
	before := ts.Stats().WireBytesIn
	for k := range conns {
		s := src{agent: fmt.Sprintf("a%d", k), topic: "app", id: 1}
		var out []byte
		for i := range frames {
			f := produceFrame(t, s, uint64(i+1), int64(i*10), int64(i*10+10), 40<<10) // a 64 KiB pooled buffer each
			frameLen = len(f)
			out = append(out, f...)
		}
		ag := dialAgent(t, ts.Addr(), s.agent)
		ags = append(ags, ag)
		werrs = append(werrs, writeInBackground(ag.c.NetConn(), out, false))
	}
	waitUntil(t, func() bool { return waitingToAppend() == conns })
	if held := (ts.Stats().WireBytesIn - before) / int64(frameLen); held > conns {
		t.Errorf("with their appends waiting, %d connections hold %d frames; want one each", conns, held)
	}
	unhold()
	for _, ag := range ags {
		for range frames {
			if ack, err := ag.readAck(); err != nil || ack.Status != wire.AckAppended {
				t.Fatalf("ack %+v, %v", ack, err)
			}
		}
	}
	for _, w := range werrs {
		if err := <-w; err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return ts.Server.gathered.Load() == 0 }) // every frame gathered was counted out
}

// waitingToAppend counts the goroutines that wait for an append lock in
// produce.
func waitingToAppend() (n int) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, "(*agentConn).produce") && strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(head, "sync.Mutex.Lock") {
			n++
		}
	}
	return n
}

// holdAppends makes the appends to partition id of topic wait, as they
// would behind another connection's, until release (or the test's end).
func holdAppends(t *testing.T, ts *testServer, topic string, id int) (release func()) {
	lk := ts.Server.dedup.topic(topic).appendLock(id)
	lk.Lock()
	var once sync.Once
	release = func() { once.Do(lk.Unlock) }
	t.Cleanup(release)
	return release
}
