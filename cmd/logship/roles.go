package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"logship/agent"
	"logship/aggregator"
	"logship/config"
	"logship/logstore"
	"logship/logstore/batch"
	"logship/sinks"
)

// roleFlags parses the flags every role takes: --config and --log-level.
func roleFlags(name string, args []string, stderr io.Writer) (cfgPath string, log *slog.Logger, err error) {
	fs, level := flags(name, "--config FILE", "logship "+name+" --config /etc/logship/"+name+".toml", stderr)
	path := fs.String("config", "", "TOML config file (required)")
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	if err := noArgs(fs); err != nil {
		return "", nil, err
	}
	if *path == "" {
		fs.Usage()
		return "", nil, errors.New("--config is required")
	}
	log, err = newLogger(stderr, *level)
	return *path, log, err
}

func runAggregator(ctx context.Context, args []string, _, stderr io.Writer) error {
	path, log, err := roleFlags("aggregator", args, stderr)
	if err != nil {
		return err
	}
	c, err := config.LoadAggregator(path)
	if err != nil {
		return err
	}
	o, err := aggregatorOptions(c, log)
	if err != nil {
		return err
	}
	s, err := aggregator.New(o)
	if err != nil {
		return err
	}
	if err := serveMetrics(ctx, c.MetricsListen, aggregatorCollector(s), s.Ready, log); err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	r := &aggregatorReloader{path: path, cur: c, s: s, log: log}
	stopReload := onHangup(ctx, r.reload)
	defer stopReload()
	log.Info("listening", "addr", s.Addr(), "id", c.ID, "data_dir", c.DataDir)
	err = s.Run(ctx)
	log.Info("stopped")
	return err
}

func aggregatorOptions(c *config.Aggregator, log *slog.Logger) (aggregator.Options, error) {
	fsync, err := logstore.ParseFsync(c.Fsync)
	if err != nil {
		return aggregator.Options{}, err
	}
	o := aggregator.Options{
		ID:            c.ID,
		Listen:        c.Listen,
		DataDir:       c.DataDir,
		Partitions:    c.Partitions,
		Fsync:         fsync,
		FsyncInterval: c.FsyncInterval.D(),
		SegmentBytes:  int64(c.SegmentBytes),
		MaxFrameBytes: int(c.MaxFrameBytes),
		Logger:        log,

		SegmentMaxAge:   c.SegmentAge.D(),
		RetentionAge:    c.RetentionAge.D(),
		RetentionBytes:  int64(c.RetentionBytes),
		MaxOpenSegments: c.MaxOpenSegments,
	}
	return o, serverSecurity(c, &o)
}

func runAgent(ctx context.Context, args []string, _, stderr io.Writer) error {
	path, log, err := roleFlags("agent", args, stderr)
	if err != nil {
		return err
	}
	c, err := config.LoadAgent(path)
	if err != nil {
		return err
	}
	o, err := agentOptions(c, log)
	if err != nil {
		return err
	}
	a, err := agent.New(o)
	if err != nil {
		return err
	}
	if err := serveMetrics(ctx, c.MetricsListen, multiCollector{agentCollector(a), agentConnCollector(a)}, agentReady(a), log); err != nil {
		a.Close()
		return fmt.Errorf("metrics_listen: %w", err)
	}
	log.Info("agent starting", "id", c.ID, "aggregators", c.Aggregators, "inputs", len(c.Inputs))
	r := &agentReloader{path: path, cur: c, a: a, log: log}
	stopReload := onHangup(ctx, r.reload)
	err = a.Run(ctx)
	stopReload()
	st := a.Stats()
	log.Info("stopped", "lines", st.Lines, "raw_bytes", st.RawBytes, "wire_bytes", st.WireBytes)
	return err
}

func agentOptions(c *config.Agent, log *slog.Logger) (agent.Options, error) {
	comp, err := batch.ParseCompression(c.Compression)
	if err != nil {
		return agent.Options{}, err
	}
	o := agent.Options{
		ID:                c.ID,
		StateDir:          c.StateDir,
		Aggregators:       c.Aggregators,
		Compression:       comp,
		Compressors:       c.Compressors,
		BatchBytes:        int(c.BatchBytes),
		BatchWait:         c.BatchWait.D(),
		WindowBytes:       int(c.WindowBytes),
		ScanInterval:      c.ScanInterval.D(),
		PollInterval:      c.PollInterval.D(),
		PositionsInterval: c.PositionsInterval.D(),
		MaxOpenFiles:      c.MaxOpenFiles,
		DrainTimeout:      c.DrainTimeout.D(),
		MaxLineBytes:      int(c.MaxLineBytes),
		PartialTimeout:    c.PartialTimeout.D(),
		Logger:            log,
	}
	o.Inputs = agentInputs(c)
	sec, err := clientSecurity(c.TLS, c.ClientAuth, log)
	o.TLS, o.Token = sec.TLS, sec.Token
	return o, err
}

func agentInputs(c *config.Agent) []agent.Input {
	var ins []agent.Input
	for _, in := range c.Inputs {
		ai := agent.Input{Topic: in.Topic, Paths: in.Paths, Exclude: in.Exclude, StartAt: in.StartAt, IgnoreOlder: in.IgnoreOlder.D()}
		if m := in.Multiline; m.Pattern != "" {
			ai.Multiline = &agent.Multiline{
				Pattern: m.Pattern, Match: m.Match, Negate: m.Negate,
				MaxLines: m.MaxLines, MaxBytes: int(m.MaxBytes), Timeout: m.Timeout.D(),
			}
		}
		ins = append(ins, ai)
	}
	return ins
}

// agentReloader applies, on SIGHUP, the [[input]] tables of a changed
// agent config to the running agent (agent.Reload), and says which other
// changes need a restart. A config that does not load, or inputs the agent
// refuses, are refused with their errors, and the running config stays.
type agentReloader struct {
	path string
	cur  *config.Agent
	a    *agent.Agent
	log  *slog.Logger
}

func (r *agentReloader) reload() {
	r.log.Info("reloading config (SIGHUP)", "config", r.path)
	c, err := config.LoadAgent(r.path)
	if err != nil {
		r.log.Error("reload refused: the running config stays", "config", r.path, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	var restart []string
	inputs := false
	for _, k := range changedKeys(r.cur, c) {
		if k == "input" {
			inputs = true
		} else {
			restart = append(restart, k)
		}
	}
	if inputs {
		if err := r.a.Reload(agentInputs(c)); err != nil {
			r.log.Error("reload refused: the running config stays", "config", r.path, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		next := *r.cur
		next.Inputs = c.Inputs
		r.cur = &next
		r.log.Info("reload applied", "inputs", len(c.Inputs))
	}
	if len(restart) > 0 {
		r.log.Warn("reload: these keys changed but take effect only after a restart", "keys", strings.Join(restart, ","))
	}
	if !inputs && len(restart) == 0 {
		r.log.Info("reload: nothing changed")
	}
}

func runSink(ctx context.Context, args []string, _, stderr io.Writer) error {
	path, log, err := roleFlags("sink", args, stderr)
	if err != nil {
		return err
	}
	c, err := config.LoadSinks(path)
	if err != nil {
		return err
	}
	stats := &sinkCollectors{}
	if err := serveMetrics(ctx, c.MetricsListen, stats, stats.ready, log); err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	log.Info("sinks starting", "sinks", len(c.Sinks), "aggregators", c.Aggregators)
	err = runSinks(ctx, c, log, stats)
	log.Info("stopped", "err", err)
	return err
}

// runSinks runs every configured sink until ctx is done.
func runSinks(ctx context.Context, c *config.Sinks, log *slog.Logger, stats *sinkCollectors) error {
	errc := make(chan error, len(c.Sinks))
	for _, sc := range c.Sinks {
		s, o, err := newSink(c, sc, log)
		if err != nil {
			return err
		}
		stats.add(sc.Name, s)
		o.Stats = sinks.NewStats()
		stats.addRuntime(sc.Name, o.Aggregators, o.Stats)
		go func() {
			err := sinks.Run(ctx, o, s)
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				err = fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			errc <- err
		}()
	}
	var errs []error
	for range c.Sinks {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func newSink(c *config.Sinks, sc config.Sink, log *slog.Logger) (sinks.Sink, sinks.Options, error) {
	log = log.With("sink", sc.Name)
	o := sinks.Options{
		Name:        sc.Name,
		Aggregators: c.Aggregators,
		Topics:      sc.Topics,
		FetchBytes:  int(sc.FetchBytes),
		Start:       sc.Start,
		Logger:      log,
	}
	var err error
	if o.Security, err = clientSecurity(c.TLS, c.ClientAuth, log); err != nil {
		return nil, o, err
	}
	switch sc.Type {
	case "file":
		s, err := newFileSink(sc, log)
		return s, o, err
	case "hdfs":
		s, err := newHDFSSink(sc, log)
		return s, o, err
	case "cassandra":
		s, err := newCassandraSink(sc, log)
		return s, o, err
	}
	return nil, o, fmt.Errorf("sink %s: unknown type %q", sc.Name, sc.Type)
}

func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintf(stderr, "Usage: logship config check [--syntax-only] FILE [FILE...]\n\nExample:\n  logship config check testdata/config/agent.toml\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return exitError{2}
	}
	fs, _ := flags("config check", "[--syntax-only] FILE [FILE...]", "logship config check testdata/config/agent.toml", stderr)
	syntaxOnly := fs.Bool("syntax-only", false, "check the files only, without reading the token, certificate and password files they name (as the role does at start)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitError{2}
	}
	check := config.CheckFiles
	if *syntaxOnly {
		check = func(path string, _ time.Time) (string, error) { return config.Check(path) }
	}
	failed := false
	for _, p := range fs.Args() {
		kind, err := check(p, time.Now())
		if err != nil {
			failed = true
			fmt.Fprintln(stdout, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s config)\n", p, kind)
	}
	if failed {
		return exitError{1}
	}
	return nil
}
