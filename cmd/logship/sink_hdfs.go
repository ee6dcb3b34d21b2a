package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"logship/config"
	"logship/sinks/file"
	"logship/sinks/hdfs"
)

// newFileSink makes a sink of type "file": the file engine on the local
// filesystem. Zero keys take the engine's defaults.
func newFileSink(sc config.Sink, log *slog.Logger) (*file.Sink, error) {
	return file.New(file.Options{
		Dir:          sc.Dir,
		Path:         sc.Path,
		RollSize:     int64(sc.RollSize),
		RollInterval: sc.RollInterval.D(),
		IdleTimeout:  sc.IdleTimeout.D(),
		BufferSize:   int(sc.WriteBuffer),
		Format:       sc.Format,
		Compression:  sc.Compression,
		Logger:       log,
	})
}

// newHDFSSink makes a sink of type "hdfs". It does not connect: the
// partitions' writers do, and retry while the NameNode is down.
func newHDFSSink(sc config.Sink, log *slog.Logger) (*file.Sink, error) {
	return hdfs.New(hdfs.Options{
		Namenodes:    sc.Namenodes,
		User:         sc.User,
		Path:         sc.Path,
		RollSize:     int64(sc.RollSize),
		RollInterval: sc.RollInterval.D(),
		IdleTimeout:  sc.IdleTimeout.D(),
		Format:       sc.Format,
		Compression:  sc.Compression,
		BlockSize:    int64(sc.BlockSize),
		Replication:  sc.BlockReplication,
		BufferSize:   int(sc.WriteBuffer),
		Logger:       log,
	})
}

// fileSinkCollector exports the Stats of a sink of type "file" or "hdfs"
// (both are the file engine).
func fileSinkCollector(name string, s *file.Sink) prometheus.Collector {
	var (
		files     = desc("logship_sink_files_published_total", "Files published (renamed to their final name).", "sink")
		records   = desc("logship_sink_files_records_total", "Records in the files published.", "sink")
		bytes     = desc("logship_sink_files_bytes_total", "Bytes of the files published, as stored (compressed).", "sink")
		abandoned = desc("logship_sink_files_abandoned_total", "Temporary files thrown away after an error; their records are written again.", "sink")
		retries   = desc("logship_sink_files_retries_total", "Filesystem operations of a publish tried again in place.", "sink")
		errs      = desc("logship_sink_files_errors_total", "Failed filesystem operations, by step (create, write, flush, sync, close, mkdir, publish, marker, rename, syncdir, remove, recover).", "sink", "step")
		open      = desc("logship_sink_files_open", "Temporary files being written now.", "sink")
	)
	return &funcCollector{
		descs: []*prometheus.Desc{files, records, bytes, abandoned, retries, errs, open},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			st := s.Stats()
			emit(files, prometheus.CounterValue, float64(st.Files), name)
			emit(records, prometheus.CounterValue, float64(st.Records), name)
			emit(bytes, prometheus.CounterValue, float64(st.Bytes), name)
			emit(abandoned, prometheus.CounterValue, float64(st.Abandoned), name)
			emit(retries, prometheus.CounterValue, float64(st.Retries), name)
			for step, n := range st.Errors {
				emit(errs, prometheus.CounterValue, float64(n), name, step)
			}
			emit(open, prometheus.GaugeValue, float64(st.OpenFiles), name)
		},
	}
}
