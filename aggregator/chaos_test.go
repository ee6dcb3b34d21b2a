package aggregator_test

// End-to-end transport tests: in-process agents (package agent) ship files
// through a misbehaving proxy (wiretest.Proxy) to real aggregators, and
// every line is read back with the consumer client.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"logship/agent"
	"logship/aggregator"
	"logship/internal/wire/wiretest"
	"logship/logstore"
	"logship/logstore/batch"
	"logship/sinks"
)

// server runs an aggregator until the test ends.
func server(t *testing.T, id string, mod func(*aggregator.Options)) *aggregator.Server {
	t.Helper()
	o := aggregator.Options{
		ID: id, Listen: "127.0.0.1:0", DataDir: t.TempDir(), Partitions: 2, Fsync: logstore.FsyncAlways,
		IdleTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := aggregator.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("aggregator %s: %v", id, err)
		}
	})
	return s
}

// readLines returns how many times each record of topic is stored on the
// aggregator at addr.
func readLines(t *testing.T, addr, topic string) map[string]int {
	t.Helper()
	ctx := context.Background()
	c, err := sinks.Dial(ctx, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dec, err := sinks.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	parts, err := c.Metadata(ctx, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range parts {
		for off := p.Start; off < p.End; {
			res, err := c.Fetch(ctx, topic, int(p.Partition), off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			next := off
			err = dec.Decode(c.Aggregator(), int(p.Partition), res.Batches, off, func(r *sinks.Record) error {
				out[string(r.Data)]++
				next = r.Offset + 1
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next == off {
				break
			}
			off = next
		}
	}
	return out
}

// fleet is n in-process agents, each tailing its own file and shipping
// to addrs, and the writer that appends lines to the files.
type fleet struct {
	agents []*agent.Agent
	files  []string
	lines  int // per agent, once the writer is done
}

func startFleet(t *testing.T, n int, addrs []string, mod func(*agent.Options)) *fleet {
	t.Helper()
	f := &fleet{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		dir := t.TempDir()
		file := filepath.Join(dir, "app.log")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		o := agent.Options{
			ID: fmt.Sprintf("host-%02d", i), StateDir: filepath.Join(dir, "state"), Aggregators: addrs,
			Compression: batch.Zstd, BatchBytes: 4 << 10, BatchWait: 10 * time.Millisecond, WindowBytes: 64 << 10,
			ScanInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond, PositionsInterval: 50 * time.Millisecond,
			HeartbeatInterval: 100 * time.Millisecond,
			Inputs:            []agent.Input{{Topic: "app", Paths: []string{file}}},
			Logger:            slog.New(slog.DiscardHandler),
		}
		if mod != nil {
			mod(&o)
		}
		a, err := agent.New(o)
		if err != nil {
			t.Fatal(err)
		}
		f.agents = append(f.agents, a)
		f.files = append(f.files, file)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				t.Errorf("agent %d: %v", i, err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

// write appends bursts of lines to every file, pausing between bursts so
// that the chaos meets a steady stream.
func (f *fleet) write(t *testing.T, bursts, perBurst int, pause time.Duration) {
	for b := range bursts {
		for i, path := range f.files {
			fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			for l := range perBurst {
				fmt.Fprintf(fh, "host-%02d line %06d %s\n", i, b*perBurst+l, "payload-payload-payload-payload")
			}
			fh.Close()
		}
		time.Sleep(pause) // the application's pace
	}
	f.lines = bursts * perBurst
}

// want lists every line the writer wrote.
func (f *fleet) want() []string {
	var out []string
	for i := range f.files {
		for l := range f.lines {
			out = append(out, fmt.Sprintf("host-%02d line %06d %s", i, l, "payload-payload-payload-payload"))
		}
	}
	return out
}

// waitAll polls until every wanted line is stored somewhere, for at most
// a minute.
func waitAll(t *testing.T, want []string, read func() map[string]int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := read()
		missing := 0
		for _, l := range want {
			if got[l] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d lines never stored", missing, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestChaosExactlyOnce ships through a proxy that delays, cuts, resets and
// blackholes the connections while the files grow: every line is stored
// exactly once, and the agents did reconnect.
func TestChaosExactlyOnce(t *testing.T) {
	s := server(t, "agg-1", nil)
	px := wiretest.NewProxy(t, s.Addr())
	f := startFleet(t, 3, []string{px.Addr()}, nil)

	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		step := func(d time.Duration) { time.Sleep(d) } // the network's moods last this long
		px.SetDelay(2 * time.Millisecond)
		step(300 * time.Millisecond)
		px.SetDelay(0)
		px.Cut()
		step(300 * time.Millisecond)
		px.Reset()
		step(300 * time.Millisecond)
		px.SetBlackhole(true) // agents notice the silence after 3 heartbeats
		step(700 * time.Millisecond)
		px.SetBlackhole(false)
		px.Reset() // clean up the dead routes, as a network would
		step(300 * time.Millisecond)
		px.SetDropReplies(true) // batches arrive and are stored; their acks are lost
		step(700 * time.Millisecond)
		px.SetDropReplies(false)
		px.Reset()
		step(300 * time.Millisecond)
		px.SetDelay(5 * time.Millisecond)
		px.Cut()
		step(300 * time.Millisecond)
		px.SetDelay(0)
		px.Reset()
	}()
	f.write(t, 60, 50, 50*time.Millisecond)
	<-chaosDone

	got := waitAll(t, f.want(), func() map[string]int { return readLines(t, s.Addr(), "app") })
	for l, n := range got {
		if n != 1 {
			t.Errorf("%q stored %d times", l, n)
		}
	}
	if len(got) != len(f.want()) {
		t.Fatalf("%d distinct lines stored, want %d", len(got), len(f.want()))
	}
	lost := int64(0)
	for _, a := range f.agents {
		lost += a.ConnStats().SessionsLost
	}
	st := s.Stats()
	t.Logf("proxy connections %d, sessions lost %d, duplicates dropped %d, resyncs %d, rejected %v",
		px.Accepted(), lost, st.Duplicates, st.Resyncs, st.Rejected)
	if px.Accepted() <= len(f.agents) || lost < int64(len(f.agents)) {
		t.Fatalf("the chaos did not reach the agents: %d connections, %d sessions lost", px.Accepted(), lost)
	}
	if st.Duplicates+st.Resyncs == 0 {
		t.Fatal("no batch was sent twice: the lost acks did not test dedup")
	}
}

// TestFailoverAcrossAggregators takes each aggregator down in turn (new
// connections refused, open ones cut) while the files grow. Nothing is
// lost; each aggregator stores each line at most once; a line stored on
// both is one that was in flight at a failover, so their number is
// bounded by the agents' windows. The agents spread over both.
func TestFailoverAcrossAggregators(t *testing.T) {
	a1 := server(t, "agg-1", nil)
	a2 := server(t, "agg-2", nil)
	p1 := wiretest.NewProxy(t, a1.Addr())
	p2 := wiretest.NewProxy(t, a2.Addr())
	const agents = 6
	f := startFleet(t, agents, []string{p1.Addr(), p2.Addr()}, nil)
	home := map[string]int{}
	waitFor(t, func() bool {
		clear(home)
		for _, a := range f.agents {
			if st := a.ConnStats(); st.Connected {
				home[st.Aggregator]++
			}
		}
		return home[p1.Addr()]+home[p2.Addr()] == agents
	})
	if home[p1.Addr()] == 0 || home[p2.Addr()] == 0 {
		t.Fatalf("every agent picked the same aggregator: %v", home)
	}

	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		for _, p := range []*wiretest.Proxy{p1, p2, p1} {
			p.SetRefuse(true)
			p.Cut()
			time.Sleep(time.Second) // the aggregator's downtime
			p.SetRefuse(false)
			time.Sleep(500 * time.Millisecond)
		}
	}()
	f.write(t, 50, 40, 50*time.Millisecond)
	<-chaosDone

	read := func() map[string]int {
		all := map[string]int{}
		for _, s := range []*aggregator.Server{a1, a2} {
			for l, n := range readLines(t, s.Addr(), "app") {
				if n != 1 {
					t.Fatalf("%s stores %q %d times", s.Addr(), l, n)
				}
				all[l] += n
			}
		}
		return all
	}
	got := waitAll(t, f.want(), read)
	dups, failovers := 0, int64(0)
	for _, n := range got {
		dups += n - 1
	}
	for _, a := range f.agents {
		failovers += a.ConnStats().Failovers
	}
	lineLen := len(f.want()[0]) + 1
	t.Logf("%d lines, %d stored on both aggregators, %d failovers", len(got), dups, failovers)
	if failovers == 0 {
		t.Fatal("no agent failed over")
	}
	if bound := int(failovers) * (64 << 10) / lineLen; dups > bound {
		t.Fatalf("%d lines duplicated across aggregators; the windows bound it to %d", dups, bound)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
