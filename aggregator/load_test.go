package aggregator

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/logstore/batch"
)

// rawAgent is a minimal agent connection for load tests: prebuilt frames
// are written straight to the socket and acks read without a buffer, so
// that the memory measured is the server's.
type rawAgent struct {
	nc  net.Conn
	ack ackBuf
}

func dialRaw(t testing.TB, addr, id string) *rawAgent {
	t.Helper()
	c, _, err := wire.DialContext(t.Context(), addr, wire.Hello{Role: wire.RoleAgent, ID: id}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &rawAgent{nc: c.NetConn()}
}

// readAck reads one frame, which must be a ProduceAck that is not Failed.
func (r *rawAgent) readAck() error { return readOKAck(r.nc, &r.ack) }

// produceFrame builds the Produce frame of a batch of src over [from, to)
// holding size bytes of records, uncompressed (so the frame is as large).
func produceFrame(t testing.TB, s src, seq uint64, from, to int64, size int) []byte {
	t.Helper()
	b, err := batch.NewBuilder(batch.None)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	line := make([]byte, 1000)
	for i := range line {
		line[i] = 'a' + byte(i%26)
	}
	for n := 0; n < size; n += len(line) {
		b.Add(1, line)
	}
	out, err := b.Build(nil, batch.Meta{Agent: s.agent, Topic: s.topic, Path: "/var/log/x.log", SourceID: s.id, RangeStart: from, RangeEnd: to})
	if err != nil {
		t.Fatal(err)
	}
	f := binary.BigEndian.AppendUint32(nil, uint32(1+wire.ProduceHeaderSize+len(out)))
	f = append(f, byte(wire.TypeProduce))
	f = wire.EncodeProduceHeader(f, seq)
	return append(f, out...)
}

// heapInuse is the heap in use after two collections: the second empties
// the sync.Pools (the shared frame buffers), whose contents survive one.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestConcurrentAgents holds manyConns agent connections open on one
// aggregator (100 here; 1,000 with -tags slow, make test-transport-slow),
// each sending large and small batches, and checks that everything is
// stored, and that the memory the server holds per connection is bounded
// both while they send and once they are idle: an idle connection must
// not keep the large frame it once read.
func TestConcurrentAgents(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	const batches = 4
	frames := make([][][]byte, manyConns)
	for i := range manyConns {
		s := src{fmt.Sprintf("host-%04d", i), "app", uint64(i)}
		for j := range batches {
			size := 200 << 10 // above the connection's own buffer: a pooled one
			if j%2 == 1 {
				size = 2 << 10
			}
			frames[i] = append(frames[i], produceFrame(t, s, uint64(j+1), int64(j*10), int64(j*10+10), size))
		}
	}
	base := heapInuse()
	conns := make([]*rawAgent, manyConns)
	for i := range conns {
		conns[i] = dialRaw(t, ts.Addr(), fmt.Sprintf("host-%04d", i))
	}
	defer func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	waitUntil(t, func() bool { return ts.Stats().OpenAgents == manyConns })
	connected := heapInuse()

	// Peak: sample the heap while every connection sends.
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, manyConns)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, f := range frames[i] {
				if _, err := c.nc.Write(f); err != nil {
					errs <- err
					return
				}
			}
			for range batches {
				if err := c.readAck(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	idle := heapInuse()
	runtime.KeepAlive(frames) // part of the base: keep it there
	st := ts.Stats()
	if st.Appended != manyConns*batches {
		t.Fatalf("%d batches appended, want %d", st.Appended, manyConns*batches)
	}
	perConn := func(h uint64) int64 { return (int64(h) - int64(base)) / manyConns }
	t.Logf("%d connections: heap per connection: connected %d KiB, idle after sending %d KiB; peak while sending %d MiB over the base",
		manyConns, perConn(connected)>>10, perConn(idle)>>10, (int64(peak)-int64(base))>>20)
	// A connection's fixed cost (wire.ConnBufferSize twice, a small frame
	// buffer, the ack queue, two goroutines, the dialled client's side)
	// is under 128 KiB; an idle connection that kept a 200 KiB frame
	// buffer would be far above it.
	const bound = 128 << 10
	if perConn(connected) > bound || perConn(idle) > bound {
		t.Fatalf("heap per connection: connected %d, idle %d bytes; want at most %d", perConn(connected), perConn(idle), bound)
	}
}
