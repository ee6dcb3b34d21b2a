package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"logship/config"
)

// TestCassandraSinkMetrics: a cassandra [[sink]] is made from its config
// (password_file read) without connecting, and its stats are exported
// under the sink's name.
func TestCassandraSinkMetrics(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &config.Sinks{
		Aggregators: []string{"127.0.0.1:7450"},
		Sinks: []config.Sink{{Name: "cass", Type: "cassandra", Topics: []string{"app"}, CassandraSink: config.CassandraSink{
			Hosts: []string{"127.0.0.1:1"}, Keyspace: "logship", Username: "u", PasswordFile: pw, DeadLetterDir: dir,
		}}},
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, _, err := newSink(c, c.Sinks[0], slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stats := &sinkCollectors{}
	stats.add("cass", s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(stats)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		ok := false
		for _, l := range mf.GetMetric()[0].GetLabel() {
			ok = ok || l.GetName() == "sink" && l.GetValue() == "cass"
		}
		if !ok {
			t.Errorf("%s: labels %v, want sink=cass", mf.GetName(), mf.GetMetric()[0].GetLabel())
		}
	}
	for _, want := range []string{"logship_sink_cassandra_rows_total", "logship_sink_cassandra_retries_total",
		"logship_sink_cassandra_dead_letters_total", "logship_sink_cassandra_errors_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}

	c.Sinks[0].PasswordFile = filepath.Join(dir, "missing")
	if _, _, err := newSink(c, c.Sinks[0], slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a missing password_file was accepted")
	}
}
