package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"logship/config"
	"logship/sinks"
	"logship/sinks/file"
	"logship/sinks/hdfs"
)

// TestHDFSSinkMetrics: an hdfs [[sink]] is made from its config without
// connecting; a NameNode that is down fails the partition's Open with
// ErrUnavailable and shows in the exported errors; a file sink with the
// engine's keys writes gzip'd json.
func TestHDFSSinkMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	c := &config.Sinks{
		Aggregators: []string{"127.0.0.1:7450"},
		Sinks: []config.Sink{
			{Name: "hdfs-main", Type: "hdfs", Topics: []string{"app"}, HDFSSink: config.HDFSSink{
				Namenodes: []string{down}, User: "logship", Path: "/logs/{topic}/{yyyy}/{mm}/{dd}/{hh}", Compression: "zstd",
			}},
			{Name: "local", Type: "file", Topics: []string{"app"}, Dir: t.TempDir(), HDFSSink: config.HDFSSink{
				Path: "{topic}/{yyyy}", Compression: "gzip", Format: "json",
			}},
		},
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	stats := &sinkCollectors{}
	for _, sc := range c.Sinks {
		s, _, err := newSink(c, sc, log)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stats.add(sc.Name, s)
		w, _, err := s.Open(ctx, sinks.Partition{Aggregator: "agg-1", Topic: "app", Committed: -1})
		if sc.Type == "hdfs" {
			if !errors.Is(err, hdfs.ErrUnavailable) {
				t.Fatalf("open with the namenode down: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, &sinks.Record{Aggregator: "agg-1", Topic: "app", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if off, err := w.Close(ctx); err != nil || off != 1 {
			t.Fatalf("close: %d, %v", off, err)
		}
		files, _, _ := file.Scan(file.OSFS{}, sc.Dir, file.MustParseTemplate("{topic}/{yyyy}"), "app", "agg-1", 0)
		if len(files) != 1 || filepath.Ext(files[0].Name.String()) != ".gz" || files[0].Name.Format() != file.FormatJSON {
			t.Fatalf("files %v", files)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(stats)
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
	for k, want := range map[string]float64{
		"logship_sink_files_errors_total,sink=hdfs-main,step=recover": 1,
		"logship_sink_files_published_total,sink=local":               1,
		"logship_sink_files_records_total,sink=local":                 1,
		"logship_sink_files_open,sink=hdfs-main":                      0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v; all: %v", k, v, ok, want, slices.Sorted(maps.Keys(got)))
		}
	}
}
