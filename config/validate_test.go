package config

import (
	"errors"
	"testing"
	"time"
)

// Structs built in code: SetDefaults fills zero fields, Validate reports
// with "config" and no lines.

func validAgent() *Agent {
	a := &Agent{
		StateDir:    "/tmp/logship/agent",
		Aggregators: []string{"127.0.0.1:7450"},
		Inputs:      []Input{{Topic: "app", Paths: []string{"/var/log/app/*.log"}}},
	}
	a.SetDefaults()
	return a
}

func validAggregator() *Aggregator {
	g := &Aggregator{Listen: "127.0.0.1:0", DataDir: "/tmp/logship/aggregator"}
	g.SetDefaults()
	return g
}

func validSinks() *Sinks {
	s := &Sinks{
		Aggregators: []string{"127.0.0.1:7450"},
		Sinks:       []Sink{{Name: "out", Type: "file", Topics: []string{"app"}, Dir: "/tmp/logship/sink"}},
	}
	s.SetDefaults()
	return s
}

// checkErr compares err with want ("" for nil) and checks its type.
func checkErr(tb testing.TB, err error, want string) {
	tb.Helper()
	if want == "" {
		if err != nil {
			tb.Errorf("got %v, want no error", err)
		}
		return
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		tb.Fatalf("got %T %v, want *Errors", err, err)
	}
	if err.Error() != want {
		tb.Errorf("got\n%s\nwant\n%s", err, want)
	}
}

func TestAgentValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(a *Agent)
		want   string
	}{
		{"defaults", func(a *Agent) {}, ""},
		{"empty", func(a *Agent) { *a = Agent{} }, `config: missing required key "id"
config: missing required key "state_dir"
config: missing required key "aggregators"
config: compression: invalid value "": want "zstd", "s2" or "none"
config: compressors: must be 1 to 256, got 0
config: batch_bytes: 0B is out of range: want 1KiB to 8MiB
config: batch_wait: must be positive, got 0s
config: window_bytes: must be positive, got 0B
config: scan_interval: must be positive, got 0s
config: poll_interval: must be positive, got 0s
config: positions_interval: must be positive, got 0s
config: max_open_files: must be at least 1, got 0
config: drain_timeout: must be positive, got 0s
config: max_line_bytes: 0B is out of range: want 1KiB to 8MiB
config: partial_timeout: must be positive, got 0s
config: missing [[input]]: want at least one`},
		{"bad topic", func(a *Agent) {
			a.Inputs = append(a.Inputs, Input{Topic: "a/b", Paths: []string{"/x"}, StartAt: "end"})
		},
			`config: input[1].topic: invalid topic "a/b": want 1 to 128 characters of [A-Za-z0-9._-]`},
		{"window", func(a *Agent) { a.BatchBytes, a.WindowBytes = 2*MiB, MiB },
			`config: window_bytes: 1MiB is smaller than batch_bytes (2MiB)`},
		{"input zero", func(a *Agent) { a.Inputs = []Input{{}} }, `config: missing required key "input[0].topic"
config: missing required key "input[0].paths"
config: input[0].start_at: invalid value "": want "beginning" or "end"`},
		{"empty address", func(a *Agent) { a.Aggregators = []string{""} }, `config: aggregators[0]: must not be empty`},
		{"ipv6", func(a *Agent) { a.Aggregators = []string{"[::1]:7400"}; a.MetricsListen = ":9400" }, ""},
		{"relative state_dir", func(a *Agent) { a.StateDir = "state" }, `config: state_dir: "state" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAgent()
			tt.change(a)
			checkErr(t, a.Validate(), tt.want)
		})
	}
}

func TestAggregatorValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(g *Aggregator)
		want   string
	}{
		{"defaults", func(g *Aggregator) {}, ""},
		{"interval", func(g *Aggregator) { g.Fsync = "interval" }, ""},
		{"bounds", func(g *Aggregator) {
			g.Partitions, g.SegmentBytes, g.MaxFrameBytes = 1025, 4*GiB, 32*KiB
		}, `config: partitions: 1025 is out of range: want 1 to 1024
config: segment_bytes: 4GiB is out of range: want at least 1MiB and less than 4GiB
config: max_frame_bytes: 32KiB is out of range: want 64KiB to 64MiB`},
		{"listen", func(g *Aggregator) { g.Listen = "7400" }, `config: listen: invalid address "7400": want host:port`},
		{"fsync_interval", func(g *Aggregator) { g.FsyncInterval = Duration(-time.Second) },
			`config: fsync_interval: must be positive, got -1s`},
		{"segments", func(g *Aggregator) {
			g.SegmentAge, g.RetentionAge, g.RetentionBytes, g.MaxOpenSegments = 0, Duration(-time.Hour), 512*MiB, 0
		}, `config: segment_age: must be positive, got 0s
config: retention_age: must be positive, got -1h
config: retention_bytes: 512MiB is less than segment_bytes (1GiB): want 0 (no limit) or at least segment_bytes
config: max_open_segments: 0 is out of range: want 1 to 65536`},
		{"retention_bytes", func(g *Aggregator) { g.RetentionBytes = 10 * GiB }, ""},
		{"relative data_dir", func(g *Aggregator) { g.DataDir = "data" }, `config: data_dir: "data" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := validAggregator()
			tt.change(g)
			checkErr(t, g.Validate(), tt.want)
		})
	}
}

func TestSinksValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *Sinks)
		want   string
	}{
		{"defaults", func(s *Sinks) {}, ""},
		{"duplicate name", func(s *Sinks) { s.Sinks = append(s.Sinks, s.Sinks[0]) },
			`config: sink[1].name: sink name "out" is already used by sink[0]`},
		{"idle", func(s *Sinks) { s.Sinks[0].IdleTimeout = Duration(time.Hour) },
			`config: sink[0].idle_timeout: 1h is longer than roll_interval (15m)`},
		{"type", func(s *Sinks) { s.Sinks[0].Type = "kafka" },
			`config: sink[0].type: invalid value "kafka": want "file", "cassandra" or "hdfs"`},
		{"no sinks", func(s *Sinks) { s.Sinks = nil }, `config: missing [[sink]]: want at least one`},
		{"relative dir", func(s *Sinks) { s.Sinks[0].Dir = "out" }, `config: sink[0].dir: "out" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSinks()
			tt.change(s)
			checkErr(t, s.Validate(), tt.want)
		})
	}
}

// TestSetDefaultsKeepsValues checks that SetDefaults only fills zero fields.
func TestSetDefaultsKeepsValues(t *testing.T) {
	a := &Agent{ID: "x", BatchBytes: 4 * KiB, Inputs: []Input{{StartAt: "end"}, {}}}
	a.SetDefaults()
	if a.ID != "x" || a.BatchBytes != 4*KiB || a.Inputs[0].StartAt != "end" || a.Inputs[1].StartAt != "beginning" {
		t.Errorf("got %+v", a)
	}
	g := &Aggregator{ID: "y", Partitions: 16}
	g.SetDefaults()
	if g.ID != "y" || g.Partitions != 16 || g.Fsync != "always" {
		t.Errorf("got %+v", g)
	}
}

func TestErrorsUnwrap(t *testing.T) {
	err := (&Agent{}).Validate()
	var p Problem
	if !errors.As(err, &p) || p.File != "config" || p.Line != 0 {
		t.Fatalf("errors.As(%v, *Problem) = %+v", err, p)
	}
	if got, want := (Problem{File: "a.toml", Line: 3, Msg: "m"}).String(), "a.toml:3: m"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
