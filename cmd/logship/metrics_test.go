package main

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"logship/agent"
	"logship/aggregator"
	"logship/logstore"
)

// gather returns the value of every series c exports, keyed by the
// metric's name and its labels ("name,label=value,...").
func gather(t testing.TB, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "," + l.GetName() + "=" + l.GetValue()
			}
			got[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return got
}

// TestAgentConnectedSeries: logship_agent_connected has a series for
// every configured aggregator, 0 for one the agent has no session with.
// One aggregator of two is down: whether the agent started there (its
// home) and failed over, or started at the live one, the down one's series
// reads 0 beside the live one's 1. (Found in review: after a failover the
// old aggregator's series vanished.)
func TestAgentConnectedSeries(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	s, err := aggregator.New(aggregator.Options{
		ID: "agg-1", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), Partitions: 1,
		Fsync: logstore.FsyncNever, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	aggDone := make(chan error, 1)
	go func() { aggDone <- s.Run(ctx) }()
	agentDone := make(chan error, 1)
	defer func() {
		cancel()
		for _, done := range []chan error{agentDone, aggDone} {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String() // nothing listens there
	ln.Close()

	a, err := agent.New(agent.Options{
		ID: "web-01", StateDir: filepath.Join(dir, "state"), Aggregators: []string{down, s.Addr()},
		Inputs: []agent.Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := agentConnCollector(a)
	want := map[string]float64{
		"logship_agent_connected,aggregator=" + down:     0,
		"logship_agent_connected,aggregator=" + s.Addr(): 0,
		"logship_agent_failover_resent_bytes_total":      0, // nothing was in flight
	}
	check := func(when string) {
		t.Helper()
		got := gather(t, c)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s: %s = %v (present %v), want %v; all: %v", when, k, g, ok, v, slices.Sorted(maps.Keys(got)))
			}
		}
	}
	check("before Run")
	go func() { agentDone <- a.Run(ctx) }()
	waitFor(t, "a session with the live aggregator", 20*time.Second, func() bool {
		st := a.ConnStats()
		return st.Connected && st.Aggregator == s.Addr()
	})
	want["logship_agent_connected,aggregator="+s.Addr()] = 1
	check("connected")
}
