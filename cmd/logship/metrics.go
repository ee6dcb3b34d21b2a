package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"logship/agent"
	"logship/aggregator"
	"logship/sinks"
	"logship/sinks/cassandra"
	"logship/sinks/file"
)

// serveMetrics serves Prometheus /metrics, /healthz, /readyz and Go's
// /debug/pprof/ on addr
// until ctx is done. /healthz answers 200 while the process runs; /readyz
// answers 200 when ready returns nil and 503 with its error otherwise. The
// listener is bound before it returns, so a bad address fails the command
// at start. An empty addr serves nothing.
func serveMetrics(ctx context.Context, addr string, c prometheus.Collector, ready func() error, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c != nil {
		reg.MustRegister(c)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	// Go's profiler, for a look under load (make bench-e2e PROFILE=1):
	// go tool pprof http://ADDR/debug/pprof/profile?seconds=10
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return nil
}

// funcCollector turns a role's Stats snapshot into metrics, taking one
// snapshot per scrape.
type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(emit func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string))
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	c.collect(func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// sinkCollectors gathers the metrics of the sinks runSinks makes, which
// exist only after the metrics server started: it is an unchecked
// collector. Each sink type with stats has a case in add.
type sinkCollectors struct {
	mu       sync.Mutex
	cs       []prometheus.Collector
	runtimes []sinkRuntime
}

// sinkRuntime is the consumer runtime of one sink, for metrics and
// readiness.
type sinkRuntime struct {
	name        string
	aggregators []string
	stats       *sinks.Stats
}

// addRuntime registers the runtime Stats of the sink name.
func (c *sinkCollectors) addRuntime(name string, aggregators []string, st *sinks.Stats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runtimes = append(c.runtimes, sinkRuntime{name, aggregators, st})
	c.cs = append(c.cs, sinkRuntimeCollector(name, st))
}

// ready: every sink has reached every aggregator at its last try. An
// aggregator that refused a sink's credentials is named as such, apart
// from those not reached: it will not heal by itself.
func (c *sinkCollectors) ready() error {
	c.mu.Lock()
	rs := c.runtimes
	c.mu.Unlock()
	if len(rs) == 0 {
		return errors.New("no sink running yet")
	}
	var errs []error
	for _, r := range rs {
		if refused := r.stats.Refused(r.aggregators); len(refused) > 0 {
			errs = append(errs, fmt.Errorf("sink %s: credentials refused (check token or token_file) by: %s", r.name, strings.Join(refused, ", ")))
		}
		if down := r.stats.Unreachable(r.aggregators); len(down) > 0 {
			errs = append(errs, fmt.Errorf("sink %s: aggregators not reached: %s", r.name, strings.Join(down, ", ")))
		}
	}
	return errors.Join(errs...)
}

var (
	sinkRecords   = desc("logship_sink_records_total", "Records delivered to the sink by the consumer runtime.", "sink")
	sinkBytes     = desc("logship_sink_record_bytes_total", "Bytes of the records' data delivered to the sink.", "sink")
	sinkFetches   = desc("logship_sink_fetches_total", "Fetch requests made.", "sink")
	sinkCommits   = desc("logship_sink_commits_total", "Offset commits stored by the aggregators.", "sink")
	sinkCommitErr = desc("logship_sink_commit_errors_total", "Offset commits refused or failed.", "sink")
	sinkResets    = desc("logship_sink_resets_total", "Operator offset resets followed (replays).", "sink")
	sinkGaps      = desc("logship_sink_gap_records_total", "Records found missing upstream (deleted by retention before they were read).", "sink")
	sinkWriterErr = desc("logship_sink_writer_errors_total", "Errors of the sink's writers; the writer is reopened and resumes from what is durable.", "sink")
	sinkLag       = desc("logship_sink_lag_records", "Records between the sink's next offset and the partition's end at the last fetch.", "sink", "aggregator", "topic", "partition")
	sinkNext      = desc("logship_sink_next_offset", "The next offset the sink fetches.", "sink", "aggregator", "topic", "partition")
	sinkCommitted = desc("logship_sink_committed_offset", "The sink's offset committed at the aggregator.", "sink", "aggregator", "topic", "partition")
)

// sinkRuntimeCollector exports a sink's consumer runtime Stats.
func sinkRuntimeCollector(name string, st *sinks.Stats) prometheus.Collector {
	return &funcCollector{
		descs: []*prometheus.Desc{sinkRecords, sinkBytes, sinkFetches, sinkCommits, sinkCommitErr, sinkResets, sinkGaps, sinkWriterErr, sinkLag, sinkNext, sinkCommitted},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := st.Snapshot()
			emit(sinkRecords, prometheus.CounterValue, float64(s.Records), name)
			emit(sinkBytes, prometheus.CounterValue, float64(s.Bytes), name)
			emit(sinkFetches, prometheus.CounterValue, float64(s.Fetches), name)
			emit(sinkCommits, prometheus.CounterValue, float64(s.Commits), name)
			emit(sinkCommitErr, prometheus.CounterValue, float64(s.CommitErrors), name)
			emit(sinkResets, prometheus.CounterValue, float64(s.Resets), name)
			emit(sinkGaps, prometheus.CounterValue, float64(s.Gaps), name)
			emit(sinkWriterErr, prometheus.CounterValue, float64(s.SinkErrors), name)
			for _, p := range s.Partitions {
				labels := []string{name, p.Aggregator, p.Topic, strconv.Itoa(p.Partition)}
				if lag := p.Lag(); lag >= 0 {
					emit(sinkLag, prometheus.GaugeValue, float64(lag), labels...)
				}
				if p.Next >= 0 {
					emit(sinkNext, prometheus.GaugeValue, float64(p.Next), labels...)
				}
				if p.Committed >= 0 {
					emit(sinkCommitted, prometheus.GaugeValue, float64(p.Committed), labels...)
				}
			}
		},
	}
}

func (c *sinkCollectors) add(name string, s sinks.Sink) {
	var col prometheus.Collector
	switch s := s.(type) {
	case *cassandra.Sink:
		col = cassandraCollector(name, s)
	case *file.Sink:
		col = fileSinkCollector(name, s)
	}
	if col == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cs = append(c.cs, col)
}

func (c *sinkCollectors) Describe(chan<- *prometheus.Desc) {}

func (c *sinkCollectors) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	cs := c.cs
	c.mu.Unlock()
	for _, col := range cs {
		col.Collect(ch)
	}
}

// aggregatorCollector exports an aggregator's Stats and partition ends.
func aggregatorCollector(s *aggregator.Server) prometheus.Collector {
	return &aggCollector{s: s}
}

var (
	aggConns     = desc("logship_aggregator_connections_total", "Connections accepted.")
	aggOpen      = desc("logship_aggregator_connections_open", "Connections open now, by role (agent or all).", "role")
	aggRejected  = desc("logship_aggregator_rejected_connections_total", "Connections closed for what the peer sent (or did not send), by reason: handshake, hello, protocol, batch, tls, auth, idle, slow.", "reason")
	aggWireIn    = desc("logship_aggregator_wire_bytes_in_total", "Bytes of frames read from agents and consumers (after TLS).")
	aggWireOut   = desc("logship_aggregator_wire_bytes_out_total", "Bytes of frames written to agents and consumers (after TLS).")
	aggBatches   = desc("logship_aggregator_batches_in_total", "Valid batches received from agents.")
	aggBytesIn   = desc("logship_aggregator_bytes_in_total", "Bytes of batches received from agents (compressed, as stored).")
	aggAcks      = desc("logship_aggregator_acks_total", "Produce acks sent, by status.", "status")
	aggGaps      = desc("logship_aggregator_gaps_total", "Batches appended although their source skipped bytes.")
	aggBeats     = desc("logship_aggregator_heartbeats_total", "Heartbeats answered.")
	aggFetches   = desc("logship_aggregator_fetches_total", "Fetch requests served.")
	aggFetchB    = desc("logship_aggregator_fetch_bytes_total", "Bytes of batches sent to consumers.")
	aggFetchR    = desc("logship_aggregator_fetch_records_total", "Records in the batches sent to consumers.")
	aggCommits   = desc("logship_aggregator_offset_commits_total", "Sink offset commits stored.")
	aggResets    = desc("logship_aggregator_offset_resets_total", "Operators' offset resets stored.")
	aggAppendLat = desc("logship_aggregator_append_seconds", "Dedup checks and append of a batch, or of the batches of one connection appended together (one write), under their partition's lock.")
	aggFsyncLat  = desc("logship_aggregator_fsync_wait_seconds", "Time an ack waited for its batch to be durable (with fsync = always: the group-commit fsync).")
	aggPartEnd   = desc("logship_aggregator_partition_end_offset", "The offset the next record of a partition gets.", "topic", "partition")
	aggPartStart = desc("logship_aggregator_partition_start_offset", "The first offset a partition still stores.", "topic", "partition")
)

// aggCollector takes one Stats snapshot per scrape.
type aggCollector struct{ s *aggregator.Server }

func (c *aggCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{aggConns, aggOpen, aggRejected, aggWireIn, aggWireOut, aggBatches, aggBytesIn, aggAcks,
		aggGaps, aggBeats, aggFetches, aggFetchB, aggFetchR, aggCommits, aggResets, aggAppendLat, aggFsyncLat, aggPartEnd, aggPartStart} {
		ch <- d
	}
}

func (c *aggCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	hist := func(d *prometheus.Desc, h aggregator.Histogram) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
	}
	st := c.s.Stats()
	emit(aggConns, prometheus.CounterValue, float64(st.Connections))
	emit(aggOpen, prometheus.GaugeValue, float64(st.OpenConnections), "all")
	emit(aggOpen, prometheus.GaugeValue, float64(st.OpenAgents), "agent")
	for reason, n := range st.Rejected {
		emit(aggRejected, prometheus.CounterValue, float64(n), reason)
	}
	emit(aggWireIn, prometheus.CounterValue, float64(st.WireBytesIn))
	emit(aggWireOut, prometheus.CounterValue, float64(st.WireBytesOut))
	emit(aggBatches, prometheus.CounterValue, float64(st.BatchesIn))
	emit(aggBytesIn, prometheus.CounterValue, float64(st.BytesIn))
	emit(aggAcks, prometheus.CounterValue, float64(st.Appended), "appended")
	emit(aggAcks, prometheus.CounterValue, float64(st.Duplicates), "duplicate")
	emit(aggAcks, prometheus.CounterValue, float64(st.Resyncs), "resync")
	emit(aggAcks, prometheus.CounterValue, float64(st.Failed), "failed")
	emit(aggGaps, prometheus.CounterValue, float64(st.Gaps))
	emit(aggBeats, prometheus.CounterValue, float64(st.Heartbeats))
	emit(aggFetches, prometheus.CounterValue, float64(st.Fetches))
	emit(aggFetchB, prometheus.CounterValue, float64(st.FetchBytes))
	emit(aggFetchR, prometheus.CounterValue, float64(st.FetchRecords))
	emit(aggCommits, prometheus.CounterValue, float64(st.OffsetCommits))
	emit(aggResets, prometheus.CounterValue, float64(st.OffsetResets))
	hist(aggAppendLat, st.AppendLatency)
	hist(aggFsyncLat, st.DurableLatency)
	for _, p := range c.s.PartitionEnds() {
		id := strconv.Itoa(p.Partition)
		emit(aggPartEnd, prometheus.GaugeValue, float64(p.End), p.Topic, id)
		emit(aggPartStart, prometheus.GaugeValue, float64(p.Start), p.Topic, id)
	}
}

// agentConnCollector exports the state of an agent's connection.
// logship_agent_connected has a series for every configured aggregator,
// 0 but for the one a session is up with: a series that vanished after a
// failover would read as "no data" rather than "not connected".
func agentConnCollector(a *agent.Agent) prometheus.Collector {
	aggs := a.Aggregators()
	var (
		connected = desc("logship_agent_connected", "1 while a session with an aggregator is up, 0 otherwise, by aggregator address (every configured one).", "aggregator")
		connects  = desc("logship_agent_connects_total", "Sessions established with aggregators.")
		failures  = desc("logship_agent_connect_failures_total", "Dials and handshakes that failed.")
		failovers = desc("logship_agent_failovers_total", "Moves to another aggregator of the list: to the next one after failures, and back home once home takes connections again.")
		lost      = desc("logship_agent_sessions_lost_total", "Established sessions that ended other than by shutdown.")
		beats     = desc("logship_agent_heartbeats_total", "Heartbeats sent.")
		resent    = desc("logship_agent_failover_resent_bytes_total", "File bytes a lost session left unacknowledged that were sent again to another aggregator: stored twice where the first one had stored them.")
	)
	return &funcCollector{
		descs: []*prometheus.Desc{connected, connects, failures, failovers, lost, beats, resent},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			st := a.ConnStats()
			for _, addr := range aggs {
				up := 0.0
				if st.Connected && st.Aggregator == addr {
					up = 1
				}
				emit(connected, prometheus.GaugeValue, up, addr)
			}
			emit(connects, prometheus.CounterValue, float64(st.Connects))
			emit(failures, prometheus.CounterValue, float64(st.ConnectFailures))
			emit(failovers, prometheus.CounterValue, float64(st.Failovers))
			emit(lost, prometheus.CounterValue, float64(st.SessionsLost))
			emit(beats, prometheus.CounterValue, float64(st.Heartbeats))
			emit(resent, prometheus.CounterValue, float64(st.FailoverResentBytes))
		},
	}
}

// multiCollector joins collectors into one.
type multiCollector []prometheus.Collector

func (cs multiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs multiCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

func agentCollector(a *agent.Agent) prometheus.Collector {
	var (
		lines      = desc("logship_agent_lines_total", "Records put in batches (again after a reconnect).")
		raw        = desc("logship_agent_read_bytes_total", "File bytes put in batches.")
		wire       = desc("logship_agent_wire_bytes_total", "Bytes written to aggregator connections.")
		batches    = desc("logship_agent_batches_total", "Batches sent.")
		acked      = desc("logship_agent_acked_batches_total", "Batches acknowledged as stored.")
		ackedBytes = desc("logship_agent_acked_bytes_total", "File bytes of acknowledged batches.")
		open       = desc("logship_agent_open_files", "Files open now.")
		waiting    = desc("logship_agent_files_waiting", "Files found that wait for max_open_files.")
		split      = desc("logship_agent_records_split_total", "Lines or multiline records cut at max_line_bytes or a multiline limit.")
		givenUp    = desc("logship_agent_given_up_bytes_total", "File bytes never shipped: rotated or deleted files past drain_timeout, truncated files whose unread bytes no copy kept.")
		full       = desc("logship_agent_window_full_seconds_total", "Time reading stopped because the window of unacknowledged bytes was full (backpressure).")
		inflight   = desc("logship_agent_inflight_bytes", "File bytes sent and not acknowledged yet.")
		srcRead    = desc("logship_agent_source_read_bytes_total", "File bytes of one open file put in batches since it was opened.", "topic", "path")
		srcAcked   = desc("logship_agent_source_acked_position_bytes", "Acknowledged position in one open file.", "topic", "path")
		srcSize    = desc("logship_agent_source_size_bytes", "Size of one open file at the agent's last look.", "topic", "path")
		srcLag     = desc("logship_agent_source_lag_bytes", "Size minus acknowledged position of one open file.", "topic", "path")
		srcUp      = desc("logship_agent_source_given_up_bytes_total", "Bytes of one open file given up.", "topic", "path")
	)
	return &funcCollector{
		descs: []*prometheus.Desc{lines, raw, wire, batches, acked, ackedBytes, open, waiting, split, givenUp, full, inflight, srcRead, srcAcked, srcSize, srcLag, srcUp},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			st := a.Stats()
			emit(lines, prometheus.CounterValue, float64(st.Lines))
			emit(raw, prometheus.CounterValue, float64(st.RawBytes))
			emit(wire, prometheus.CounterValue, float64(st.WireBytes))
			emit(batches, prometheus.CounterValue, float64(st.Batches))
			emit(acked, prometheus.CounterValue, float64(st.AckedBatches))
			emit(ackedBytes, prometheus.CounterValue, float64(st.AckedBytes))
			emit(open, prometheus.GaugeValue, float64(st.OpenFiles))
			emit(waiting, prometheus.GaugeValue, float64(st.FilesWaiting))
			emit(split, prometheus.CounterValue, float64(st.RecordsSplit))
			emit(givenUp, prometheus.CounterValue, float64(st.GivenUpBytes))
			emit(full, prometheus.CounterValue, st.WindowFull.Seconds())
			emit(inflight, prometheus.GaugeValue, float64(st.InflightBytes))
			seen := make(map[[2]string]bool, len(st.Sources))
			for _, s := range st.Sources {
				// Two open files can share a path for a moment (a rotated
				// file whose rename the agent has not seen yet): report the
				// first, as a registry refuses duplicate series.
				k := [2]string{s.Topic, s.Path}
				if seen[k] {
					continue
				}
				seen[k] = true
				emit(srcRead, prometheus.CounterValue, float64(s.ReadBytes), s.Topic, s.Path)
				emit(srcAcked, prometheus.GaugeValue, float64(s.AckedPos), s.Topic, s.Path)
				emit(srcSize, prometheus.GaugeValue, float64(s.Size), s.Topic, s.Path)
				emit(srcLag, prometheus.GaugeValue, float64(s.Lag), s.Topic, s.Path)
				emit(srcUp, prometheus.CounterValue, float64(s.GivenUpBytes), s.Topic, s.Path)
			}
		},
	}
}

// agentReady: the agent is ready while a session with an aggregator is up.
func agentReady(a *agent.Agent) func() error {
	return func() error {
		if cs := a.ConnStats(); !cs.Connected {
			if cs.Aggregator == "" {
				return errors.New("not connected to an aggregator yet")
			}
			return fmt.Errorf("not connected: last tried %s", cs.Aggregator)
		}
		return nil
	}
}
