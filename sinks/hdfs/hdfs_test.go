package hdfs

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"logship/sinks"
	"logship/sinks/file"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSplitPath(t *testing.T) {
	for _, c := range []struct{ in, root, rel string }{
		{"/logs/{topic}/{yyyy}/{mm}/{dd}/{hh}", "/logs", "{topic}/{yyyy}/{mm}/{dd}/{hh}"},
		{"/data/logship/{topic}", "/data/logship", "{topic}"},
		{"/data/all", "/data/all", ""},
		{"/x/dt={yyyy}{mm}{dd}/{topic}", "/x", "dt={yyyy}{mm}{dd}/{topic}"},
	} {
		root, rel, err := SplitPath(c.in)
		if err != nil || root != c.root || rel != c.rel {
			t.Errorf("SplitPath(%q) = %q, %q, %v; want %q, %q", c.in, root, rel, err, c.root, c.rel)
		}
	}
	for _, bad := range []string{"logs/{topic}", "/{topic}/x", "/", "/logs/", "/logs//{topic}", "/logs/../{topic}", "/logs/{nope}",
		"/logs/a}b/{topic}", "/logs/{topic}/{hh}:00", "/lo:gs/{topic}"} {
		if _, _, err := SplitPath(bad); err == nil {
			t.Errorf("SplitPath(%q) accepted", bad)
		}
	}
}

// remoteErr is an exception as the client returns it from a NameNode.
type remoteErr struct{ exc string }

func (e remoteErr) Error() string     { return e.exc + ": boom" }
func (e remoteErr) Method() string    { return "create" }
func (e remoteErr) Desc() string      { return "" }
func (e remoteErr) Exception() string { return e.exc }
func (e remoteErr) Message() string   { return e.Error() }

func TestErrorClasses(t *testing.T) {
	quota := &os.PathError{Op: "create", Path: "/x", Err: remoteErr{"org.apache.hadoop.hdfs.protocol.DSQuotaExceededException"}}
	if !isQuota(quota) || !isRemote(quota) {
		t.Fatal("quota exception not recognised")
	}
	for _, err := range []error{&os.PathError{Err: os.ErrPermission}, &os.PathError{Err: os.ErrNotExist}, remoteErr{"java.io.IOException"}} {
		if !isRemote(err) {
			t.Errorf("%v taken for a broken connection", err)
		}
	}
	for _, err := range []error{io.EOF, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, errors.New("no available namenodes: refused")} {
		if isRemote(err) {
			t.Errorf("%v taken for a NameNode's answer", err)
		}
	}
	if err := classify(quota); !errors.Is(err, ErrQuota) {
		t.Fatalf("classify(quota) = %v", err)
	}
	if err := classify(io.ErrUnexpectedEOF); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("classify(a broken connection) = %v", err)
	}
}

// TestDeadlineConn: a NameNode that stops answering fails the call after
// the timeout instead of hanging the sink, and the connection is dropped.
func TestDeadlineConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done, served := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-served }()
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			<-done // silent until the test ends
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &deadlineConn{Conn: raw, timeout: 50 * time.Millisecond}
	defer c.Close()
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("read: %v after %s", err, time.Since(start))
	}
	// The connection is closed: a late reply is never read as the answer
	// to the next call, whose write fails, so the client dials again.
	if _, err := c.Write([]byte("next call")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failed read: %v, want net.ErrClosed", err)
	}
}

// TestNamenodeDown: with no NameNode listening, Open fails with
// ErrUnavailable (the runtime backs off and opens again), New did not
// need it, and the failure is counted.
func TestNamenodeDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s, err := New(Options{Namenodes: []string{addr}, User: "logship", Path: "/logs/{topic}/{yyyy}/{mm}/{dd}", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Open(context.Background(), sinks.Partition{Aggregator: "agg-1", Topic: "app", Partition: 0, Committed: -1})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
	if st := s.Stats(); st.Errors["recover"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, o := range map[string]Options{
		"no namenodes": {User: "u", Path: "/logs/{topic}"},
		"no user":      {Namenodes: []string{"nn:8020"}, Path: "/logs/{topic}"},
		"relative":     {Namenodes: []string{"nn:8020"}, User: "u", Path: "logs/{topic}"},
		"bad format":   {Namenodes: []string{"nn:8020"}, User: "u", Path: "/logs/{topic}", Format: "csv"},
	} {
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestApplyDefaults: the HDFS defaults, on the engine over a local
// directory (the FS interface the HDFS FS implements): idle 5m.
func TestApplyDefaults(t *testing.T) {
	o := file.Options{Dir: t.TempDir()}
	ApplyDefaults(&o)
	if o.IdleTimeout != 5*time.Minute || o.BufferSize != 8<<20 || o.Retries != DefaultRetries {
		t.Fatalf("%+v", o)
	}
}

// TestOpenBoundedByCtx: a NameNode that accepts connections and never
// answers (hung, or a GC pause). Open returns when its ctx ends, not when
// the FS's Timeout (default 60s, here 3s) passes (sink.go: ctx bounds
// Open and Close; the runtime's shutdown waits for them); the call it gave
// up on ends when the sink closes (goleak checks it did).
func TestOpenBoundedByCtx(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	s, err := New(Options{Namenodes: []string{ln.Addr().String()}, User: "logship", Path: "/logs/{topic}", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err = s.Open(ctx, sinks.Partition{Aggregator: "agg-1", Topic: "app", Partition: 0, Committed: -1})
	if took := time.Since(start); took > time.Second {
		t.Errorf("Open(ctx of 100ms) returned after %s: %v", took.Round(100*time.Millisecond), err)
	}
}
