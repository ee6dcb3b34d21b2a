package aggregator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"logship/internal/testlogs"
	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects a server's log lines for assertions.
type logBuffer struct{ testlogs.Buffer }

// lines returns the log lines containing every one of subs.
func (l *logBuffer) lines(subs ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// testServer is a running Server with its log.
type testServer struct {
	*Server
	opts   Options
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// start runs a server on 127.0.0.1:0 over dir and stops it at cleanup.
// mod may change the options.
func start(t testing.TB, dir string, mod func(*Options)) *testServer {
	t.Helper()
	logs := &logBuffer{}
	opts := Options{
		ID:         "agg-1",
		Listen:     "127.0.0.1:0",
		DataDir:    dir,
		Partitions: 4,
		Fsync:      logstore.FsyncNever,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, opts: opts, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down and checks that Run returned nil. It may be
// called more than once.
func (ts *testServer) stop(t testing.TB) {
	t.Helper()
	ts.cancel()
	if ts.done == nil {
		return
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of shutdown")
	}
	ts.done = nil
}

// restart stops the server and starts a new one on the same DataDir.
func (ts *testServer) restart(t testing.TB, mod func(*Options)) *testServer {
	t.Helper()
	ts.stop(t)
	return start(t, ts.opts.DataDir, mod)
}

// src describes a source for building batches.
type src struct {
	agent, topic string
	id           uint64
}

// mkBatch builds a batch of src covering [from, to) with one record per
// line; lines default to one record naming the range.
func mkBatch(t testing.TB, s src, from, to int64, lines ...string) []byte {
	t.Helper()
	if len(lines) == 0 {
		lines = []string{fmt.Sprintf("%s/%s/%d:%d-%d", s.agent, s.topic, s.id, from, to)}
	}
	b, err := batch.NewBuilder(batch.None)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i, l := range lines {
		b.Add(int64(1000+i), []byte(l))
	}
	out, err := b.Build(nil, batch.Meta{Agent: s.agent, Topic: s.topic, Path: "/var/log/x.log", SourceID: s.id, RangeStart: from, RangeEnd: to})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// agentClient is a test agent connection.
type agentClient struct {
	t   testing.TB
	c   *wire.Conn
	seq uint64
}

func dialAgent(t testing.TB, addr, id string) *agentClient {
	t.Helper()
	c, w, err := wire.DialContext(context.Background(), addr, wire.Hello{Role: wire.RoleAgent, ID: id}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w.Aggregator != "agg-1" {
		t.Fatalf("welcome %+v", w)
	}
	t.Cleanup(func() { c.NetConn().Close() })
	return &agentClient{t: t, c: c}
}

// close closes the connection, as an agent does after a Failed ack.
func (a *agentClient) close() { a.c.NetConn().Close() }

// send sends one Produce and returns its seq.
func (a *agentClient) send(b []byte) uint64 {
	a.t.Helper()
	a.seq++
	if err := a.c.WriteFrame(wire.TypeProduce, wire.EncodeProduceHeader(nil, a.seq), b); err != nil {
		a.t.Fatal(err)
	}
	if err := a.c.Flush(); err != nil {
		a.t.Fatal(err)
	}
	return a.seq
}

// readAck reads one ProduceAck; an Error frame or a read error is an error.
func (a *agentClient) readAck() (wire.ProduceAck, error) {
	a.c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	t, p, err := a.c.ReadFrame()
	if err != nil {
		return wire.ProduceAck{}, err
	}
	switch t {
	case wire.TypeProduceAck:
		var ack wire.ProduceAck
		return ack, ack.Decode(p)
	case wire.TypeError:
		return wire.ProduceAck{}, wire.DecodeError(p)
	}
	return wire.ProduceAck{}, fmt.Errorf("unexpected %s", t)
}

// produce sends one batch and waits for its ack.
func (a *agentClient) produce(b []byte) wire.ProduceAck {
	a.t.Helper()
	seq := a.send(b)
	ack, err := a.readAck()
	if err != nil {
		a.t.Fatal(err)
	}
	if ack.Seq != seq {
		a.t.Fatalf("ack for seq %d, want %d", ack.Seq, seq)
	}
	return ack
}

// expect checks an ack's status and stored end.
func expect(t testing.TB, ack wire.ProduceAck, status wire.AckStatus, storedEnd int64) {
	t.Helper()
	if ack.Status != status || ack.StoredEnd != storedEnd {
		t.Fatalf("ack %+v: want status %s, stored end %d", ack, status, storedEnd)
	}
}

// consumerClient is a test consumer connection.
type consumerClient struct {
	t   testing.TB
	c   *wire.Conn
	req uint64
}

func dialConsumer(t testing.TB, addr string) *consumerClient {
	t.Helper()
	c, _, err := wire.DialContext(context.Background(), addr, wire.Hello{Role: wire.RoleConsumer, ID: "test-sink"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.NetConn().Close() })
	return &consumerClient{t: t, c: c}
}

// call sends one request and reads the answer's frame.
func (cc *consumerClient) call(t wire.Type, payload []byte, want wire.Type) ([]byte, error) {
	if err := cc.c.WriteFrame(t, payload); err != nil {
		return nil, err
	}
	if err := cc.c.Flush(); err != nil {
		return nil, err
	}
	cc.c.NetConn().SetReadDeadline(time.Now().Add(40 * time.Second))
	rt, p, err := cc.c.ReadFrame()
	if err != nil {
		return nil, err
	}
	if rt == wire.TypeError {
		return nil, wire.DecodeError(p)
	}
	if rt != want {
		return nil, fmt.Errorf("got %s, want %s", rt, want)
	}
	return p, nil
}

func (cc *consumerClient) fetch(topic string, part uint32, off int64, maxBytes, waitMs uint32) wire.FetchResult {
	cc.t.Helper()
	cc.req++
	f := wire.Fetch{Req: cc.req, Topic: topic, Partition: part, Offset: off, MaxBytes: maxBytes, MaxWaitMs: waitMs}
	p, err := cc.call(wire.TypeFetch, f.Encode(nil), wire.TypeFetchResult)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.FetchResult
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	if r.Req != cc.req {
		cc.t.Fatalf("fetch answer for req %d, want %d", r.Req, cc.req)
	}
	r.Batches = bytes.Clone(r.Batches)
	return r
}

func (cc *consumerClient) metadata(topics ...string) []wire.PartitionInfo {
	cc.t.Helper()
	cc.req++
	m := wire.Metadata{Req: cc.req, Topics: topics}
	p, err := cc.call(wire.TypeMetadata, m.Encode(nil), wire.TypeMetadataResult)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.MetadataResult
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	if r.Aggregator != "agg-1" {
		cc.t.Fatalf("metadata from %q", r.Aggregator)
	}
	return r.Partitions
}

func (cc *consumerClient) commit(sink, topic string, part uint32, off int64) wire.OffsetCommitted {
	cc.t.Helper()
	return cc.commitEpoch(sink, topic, part, off, 0)
}

func (cc *consumerClient) commitEpoch(sink, topic string, part uint32, off int64, epoch uint64) wire.OffsetCommitted {
	cc.t.Helper()
	cc.req++
	m := wire.OffsetCommit{Req: cc.req, Sink: sink, Topic: topic, Partition: part, Offset: off, Epoch: epoch}
	return cc.committed(wire.TypeOffsetCommit, m.Encode(nil))
}

func (cc *consumerClient) reset(sink, topic string, part uint32, off int64) wire.OffsetCommitted {
	cc.t.Helper()
	cc.req++
	m := wire.OffsetReset{Req: cc.req, Sink: sink, Topic: topic, Partition: part, Offset: off}
	return cc.committed(wire.TypeOffsetReset, m.Encode(nil))
}

func (cc *consumerClient) committed(t wire.Type, payload []byte) wire.OffsetCommitted {
	cc.t.Helper()
	p, err := cc.call(t, payload, wire.TypeOffsetCommitted)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.OffsetCommitted
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	return r
}

func (cc *consumerClient) offsets(sink, topic string) []wire.PartitionOffset {
	cc.t.Helper()
	cc.req++
	m := wire.OffsetFetch{Req: cc.req, Sink: sink, Topic: topic}
	p, err := cc.call(wire.TypeOffsetFetch, m.Encode(nil), wire.TypeOffsets)
	if err != nil {
		cc.t.Fatal(err)
	}
	var r wire.Offsets
	if err := r.Decode(p); err != nil {
		cc.t.Fatal(err)
	}
	return r.Offsets
}

// stored is one stored batch as a sink sees it.
type stored struct {
	h       batch.Header
	records []string
}

// splitBatches parses the batches of a FetchResult.
func splitBatches(t testing.TB, b []byte) []stored {
	t.Helper()
	d, err := batch.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out []stored
	for len(b) > 0 {
		n, err := batch.Size(b)
		if err != nil || n > len(b) {
			t.Fatalf("batch size %d of %d bytes: %v", n, len(b), err)
		}
		h, err := batch.Parse(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		st := stored{h: h}
		if err := d.Decode(b[:n], &h, func(r batch.Record) error {
			st.records = append(st.records, string(r.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
		b = b[n:]
	}
	return out
}

// readAll fetches every stored batch of a partition, checking that base
// offsets are contiguous from the start.
func (cc *consumerClient) readAll(topic string, part uint32) []stored {
	cc.t.Helper()
	var out []stored
	off := int64(0)
	for {
		r := cc.fetch(topic, part, off, 1<<20, 0)
		if r.Status != wire.FetchOK {
			cc.t.Fatalf("fetch %s-%d at %d: %s", topic, part, off, r.Status)
		}
		if len(r.Batches) == 0 {
			if off != r.End {
				cc.t.Fatalf("empty fetch at %d before end %d", off, r.End)
			}
			return out
		}
		for _, st := range splitBatches(cc.t, r.Batches) {
			if st.h.BaseOffset != off {
				cc.t.Fatalf("%s-%d: batch at base offset %d, want %d", topic, part, st.h.BaseOffset, off)
			}
			off = st.h.NextOffset()
			out = append(out, st)
		}
	}
}

// readTopic reads every partition of a topic that exists.
func (cc *consumerClient) readTopic(topic string) map[uint32][]stored {
	cc.t.Helper()
	out := map[uint32][]stored{}
	for _, pi := range cc.metadata(topic) {
		out[pi.Partition] = cc.readAll(topic, pi.Partition)
	}
	return out
}

// isRemote reports whether err is an Error frame with the code.
func isRemote(err error, code wire.ErrorCode) bool {
	var re *wire.RemoteError
	return errors.As(err, &re) && re.Code == code
}

// waitUntil polls cond (a state the test cannot be told about, such as a
// request the server is holding) until it holds, for at most 10s.
func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// writeInBackground writes out to nc on a goroutine of its own (the
// aggregator may answer, or stop reading, before it is all written), then
// closes nc's write side if closeWrite; the outcome comes on the channel.
func writeInBackground(nc net.Conn, out []byte, closeWrite bool) <-chan error {
	werr := make(chan error, 1)
	go func() {
		_, err := nc.Write(out)
		if err == nil && closeWrite {
			err = nc.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	return werr
}

// appendFirst sends the first batch of s, [0, 10) with 2 KiB of records,
// and checks that it is appended.
func appendFirst(t *testing.T, a *agentClient, s src) {
	t.Helper()
	if _, err := a.c.NetConn().Write(produceFrame(t, s, 1, 0, 10, 2<<10)); err != nil {
		t.Fatal(err)
	}
	ack, err := a.readAck()
	if err != nil {
		t.Fatal(err)
	}
	expect(t, ack, wire.AckAppended, 10)
}

// blockFirstRoll makes the next roll of partition app-0 of the server in
// dir fail, an error that does not poison the partition: a directory
// where the sealed first segment's index goes. It is removed at cleanup,
// before the server's Close writes the index (call it after start), or
// at once by the function it returns.
func blockFirstRoll(t *testing.T, dir string) (unblock func()) {
	t.Helper()
	idx := filepath.Join(dir, "log", "app-0", "00000000000000000000.index")
	if err := os.MkdirAll(filepath.Join(idx, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	unblock = func() { os.RemoveAll(idx) }
	t.Cleanup(unblock)
	return unblock
}
