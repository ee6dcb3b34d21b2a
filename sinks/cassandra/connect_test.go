package cassandra

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"logship/sinks"
)

// TestCloseWhileConnecting: Open returns when its context ends while the
// cluster does not answer (so the runtime's Run returns), and Sink.Close
// then ends the connection attempt at once: gocql's CreateSession takes no
// context, but the dialer closes the connections it made (connectDialer),
// instead of waiting out the driver's whole connect timeout. The real
// NewGocqlSession is used, against a server that accepts and never
// answers; goleak (TestMain) checks that nothing of it outlives Close.
func TestCloseWhileConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A "Cassandra" that accepts connections and never answers: a node
	// hung, or behind a firewall that drops its replies.
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	const timeout = 4 * time.Second
	s, err := New(Options{
		Name: "cass", Hosts: []string{ln.Addr().String()}, Keyspace: "logship",
		DeadLetterDir: t.TempDir(), Timeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	openErr := make(chan error, 1)
	go func() {
		_, _, err := s.Open(ctx, sinks.Partition{Aggregator: "agg-1", Topic: "app", Committed: -1})
		openErr <- err
	}()
	<-accepted // the driver is connecting, waiting for an answer
	cancel()   // the runtime shuts down
	if err := <-openErr; err == nil {
		t.Fatal("Open succeeded against a silent server")
	}
	start := time.Now()
	s.Close()
	took := time.Since(start)
	t.Logf("Sink.Close took %s (request_timeout %s)", took, timeout)
	if took > time.Second {
		t.Fatalf("Sink.Close blocked %s waiting for a connection attempt after shutdown", took)
	}
}

// TestCloseBoundsWaitForConnect: a connection attempt that does not end
// with the sink's context (a DNS lookup, a NewSession that ignores ctx)
// holds Close at most closeConnectWait. It ends by itself later, and
// closes the session it made: the sink is closed.
func TestCloseBoundsWaitForConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		release := make(chan struct{})
		s := newTestSink(t, f, Options{NewSession: func(context.Context) (Session, error) {
			<-release // deaf to ctx
			return f, nil
		}})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, _, err := s.Open(ctx, sinks.Partition{Aggregator: "agg-1", Topic: "app", Committed: -1}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Open while connecting: %v", err)
		}
		start := time.Now()
		s.Close()
		if took := time.Since(start); took != closeConnectWait {
			t.Fatalf("Close took %s, want %s", took, closeConnectWait)
		}
		close(release)
		synctest.Wait() // the attempt ends: no goroutine left behind
		f.mu.Lock()
		closes := f.closes
		f.mu.Unlock()
		if closes != 1 {
			t.Fatalf("the session made after Close was closed %d times, want 1", closes)
		}
	})
}
