package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"logship/internal/wire"
)

// scriptedAgg is a listener that runs serve for each accepted connection
// until the test ends; the test's cleanup closes it and every connection
// and waits for the goroutines.
type scriptedAgg struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newScriptedAgg(t testing.TB, serve func(net.Conn)) *scriptedAgg {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &scriptedAgg{ln: ln}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns = append(l.conns, nc)
			l.mu.Unlock()
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer nc.Close()
				serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

func (l *scriptedAgg) addr() string { return l.ln.Addr().String() }

// acceptSession runs the server handshake (version 2) on nc.
func acceptSession(nc net.Conn, id string) (*wire.Conn, bool) {
	c := wire.NewConn(nc, 0)
	h, err := c.ServerHandshake(5 * time.Second)
	if err != nil {
		return nil, false
	}
	if c.Accept(wire.Welcome{Version: h.Version, Aggregator: id, MaxFrame: wire.DefaultMaxFrame}) != nil {
		return nil, false
	}
	return c, true
}

// notify sends on ch without blocking: the test counts, it never holds up
// a connection.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// homeFirst returns the two aggregators in the order that makes home the
// agent's home aggregator (homeIndex).
func homeFirst(id, home, other string) []string {
	if homeIndex(id, 2) == 0 {
		return []string{home, other}
	}
	return []string{other, home}
}

// connTestOpts are testOpts with a short heartbeat, so that the silence
// limit (silenceFactor intervals) is 150ms.
func connTestOpts(t testing.TB) Options {
	dir := t.TempDir()
	opts := testOpts(t, dir)
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	opts.HeartbeatInterval = 50 * time.Millisecond
	return opts
}

// startAgentWith is startAgent with hook run on the agent before Run.
func startAgentWith(t testing.TB, opts Options, hook func(*Agent)) *runningAgent {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hook(a)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// TestSilentAggregatorIsLeft: an aggregator that completes the handshake
// and then answers nothing (a hung disk holds its acks and the heartbeat
// answers queued behind them; a middlebox that stalls connections) is
// given up after the silence limit, and each such session counts as a
// failure however long it lasted: after failoverAfter of them in a row the
// agent moves to the next aggregator.
func TestSilentAggregatorIsLeft(t *testing.T) {
	sessionsA := make(chan struct{}, 16)
	hung := newScriptedAgg(t, func(nc net.Conn) {
		c, ok := acceptSession(nc, "hung")
		if !ok {
			return
		}
		notify(sessionsA)
		for { // read everything, answer nothing
			if _, _, err := c.ReadFrame(); err != nil {
				return
			}
		}
	})
	dialsB := make(chan struct{}, 16)
	good := newScriptedAgg(t, func(nc net.Conn) {
		notify(dialsB)
		var b [1]byte
		nc.Read(b[:]) // until the agent or the cleanup closes it
	})
	opts := connTestOpts(t)
	opts.Aggregators = homeFirst(opts.ID, hung.addr(), good.addr())
	// Every silent session lasts far longer than this: a rule that counts
	// a session healthy by how long it lasted would keep the agent on A.
	ag := startAgentWith(t, opts, func(a *Agent) { a.conn.healthyAfterHook = time.Millisecond })

	// The agent retries the silent aggregator once, then fails over
	// (failoverAfter = 2): B is dialled before a third session on A.
	n := 0
	timeout := time.After(20 * time.Second)
	for {
		select {
		case <-dialsB:
			for drained := false; !drained; { // sessions that raced the dial
				select {
				case <-sessionsA:
					n++
				default:
					drained = true
				}
			}
			if st := ag.ConnStats(); st.Failovers != 1 || n != failoverAfter {
				t.Fatalf("B dialled after %d sessions on A, stats %+v; want %d sessions and 1 failover", n, st, failoverAfter)
			}
			return
		case <-sessionsA:
			n++
			if n > failoverAfter {
				t.Fatalf("%d sessions with the silent aggregator and no attempt at the other one: silent sessions count as healthy (stats %+v)", n, ag.ConnStats())
			}
		case <-timeout:
			t.Fatalf("neither a failover nor a third session on A (stats %+v)", ag.ConnStats())
		}
	}
}

// TestHeartbeatAnswersKeepAggregator: a session whose aggregator answers
// heartbeats is healthy, even with no batch to ack: when the aggregator
// then closes it (a restart), the agent reconnects to the same aggregator
// however often that happens, and never fails over.
func TestHeartbeatAnswersKeepAggregator(t *testing.T) {
	const sessions = 4
	sessionsA := make(chan struct{}, 16)
	live := newScriptedAgg(t, func(nc net.Conn) {
		c, ok := acceptSession(nc, "live")
		if !ok {
			return
		}
		// Answer two heartbeats, then close: a healthy session that ends.
		for answered := 0; answered < 2; {
			typ, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			if typ != wire.TypeHeartbeat {
				continue
			}
			if c.WriteFrame(wire.TypeHeartbeat, p) != nil || c.Flush() != nil {
				return
			}
			answered++
		}
		notify(sessionsA)
	})
	dialsB := make(chan struct{}, 16)
	other := newScriptedAgg(t, func(nc net.Conn) { notify(dialsB) })
	opts := connTestOpts(t)
	opts.Aggregators = homeFirst(opts.ID, live.addr(), other.addr())
	ag := startAgent(t, opts)

	timeout := time.After(20 * time.Second)
	for n := 0; n < sessions; {
		select {
		case <-sessionsA:
			n++
		case <-dialsB:
			t.Fatalf("failed over after %d healthy sessions (stats %+v)", n, ag.ConnStats())
		case <-timeout:
			t.Fatalf("%d of %d sessions within 20s (stats %+v)", n, sessions, ag.ConnStats())
		}
	}
	if st := ag.ConnStats(); st.Failovers != 0 {
		t.Fatalf("stats %+v, want no failover", st)
	}
}

// TestAgentReportsFileLag: a version 2 session reports the open files and
// their lag to the aggregator, most lagging first.
func TestAgentReportsFileLag(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	fa.setHold(true) // nothing is acknowledged: the files lag by all they hold
	opts := testOpts(t, dir, fa.addr())
	opts.HeartbeatInterval = 50 * time.Millisecond
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	newLogWriter(t, filepath.Join(dir, "a.log"), "a").write(10)
	newLogWriter(t, filepath.Join(dir, "b.log"), "b").write(100)
	startAgent(t, opts)
	var r *wire.AgentReport
	waitFor(t, "a report of both files", func() bool {
		fa.mu.Lock()
		r = fa.report
		fa.mu.Unlock()
		return r != nil && r.Files == 2 && len(r.Lagging) == 2 && r.Lagging[1].Size > 0
	})
	if r.Lagging[0].Size-r.Lagging[0].Acked < r.Lagging[1].Size-r.Lagging[1].Acked || !strings.HasSuffix(r.Lagging[0].Path, "b.log") {
		t.Fatalf("not most lagging first: %+v", r.Lagging)
	}
	if r.LagBytes != (r.Lagging[0].Size-r.Lagging[0].Acked)+(r.Lagging[1].Size-r.Lagging[1].Acked) {
		t.Fatalf("lag %d, files %+v", r.LagBytes, r.Lagging)
	}
	fa.setHold(false)
}
