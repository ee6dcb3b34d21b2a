package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"logship/config"
	"logship/sinks/cassandra"
)

// newCassandraSink makes the sink of a [[sink]] of type "cassandra". It
// reads password_file; it does not connect (the sink's first Open does,
// and the runtime retries it).
func newCassandraSink(sc config.Sink, log *slog.Logger) (*cassandra.Sink, error) {
	c := &sc.CassandraSink
	password, err := c.PasswordSecret()
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
	}
	return cassandra.New(cassandra.Options{
		Name:           sc.Name,
		Hosts:          c.Hosts,
		Keyspace:       c.Keyspace,
		Table:          c.Table,
		Consistency:    c.Consistency,
		TTL:            c.TTL.D(),
		CreateSchema:   c.CreateSchema,
		Replication:    c.Replication,
		Username:       c.Username,
		Password:       password,
		TLS:            cassandra.TLSOptions{CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ServerName: c.TLSServerName},
		LocalDC:        c.LocalDC,
		Timeout:        c.RequestTimeout.D(),
		Concurrency:    c.Concurrency,
		BatchMaxBytes:  int(c.BatchMaxBytes),
		MaxRecordBytes: int(c.MaxRecordBytes),
		Bucket:         c.Bucket.D(),
		RetryMin:       c.RetryMin.D(),
		RetryMax:       c.RetryMax.D(),
		MaxRetries:     c.MaxRetries,
		DeadLetterDir:  c.DeadLetterDir,
		Logger:         log,
	})
}

// cassandraCollector exports a Cassandra sink's Stats, labelled with the
// sink's name.
func cassandraCollector(name string, s *cassandra.Sink) prometheus.Collector {
	var (
		writes   = desc("logship_sink_cassandra_writes_total", "Batch writes tried, retries included.", "sink")
		batches  = desc("logship_sink_cassandra_batches_total", "Batches written.", "sink")
		rows     = desc("logship_sink_cassandra_rows_total", "Rows written.", "sink")
		bytes    = desc("logship_sink_cassandra_bytes_total", "Estimated bytes of the rows written.", "sink")
		retries  = desc("logship_sink_cassandra_retries_total", "Writes tried again after a failure.", "sink")
		dead     = desc("logship_sink_cassandra_dead_letters_total", "Records written to the dead-letter file.", "sink")
		inflight = desc("logship_sink_cassandra_batches_in_flight", "Batches being written or waiting to be retried.", "sink")
		errs     = desc("logship_sink_cassandra_errors_total", "Failed writes, by kind.", "sink", "kind")
	)
	return &funcCollector{
		descs: []*prometheus.Desc{writes, batches, rows, bytes, retries, dead, inflight, errs},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			st := s.Stats()
			emit(writes, prometheus.CounterValue, float64(st.Writes), name)
			emit(batches, prometheus.CounterValue, float64(st.Batches), name)
			emit(rows, prometheus.CounterValue, float64(st.Rows), name)
			emit(bytes, prometheus.CounterValue, float64(st.Bytes), name)
			emit(retries, prometheus.CounterValue, float64(st.Retries), name)
			emit(dead, prometheus.CounterValue, float64(st.DeadLetters), name)
			emit(inflight, prometheus.GaugeValue, float64(st.InFlight), name)
			for kind, n := range st.Errors {
				emit(errs, prometheus.CounterValue, float64(n), name, kind)
			}
		},
	}
}
