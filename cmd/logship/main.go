// Command logship is the one binary of logship: every role (agent,
// aggregator, sink) and every tool (cat, config check, demo) is a
// subcommand. It only parses flags, loads config, wires packages and
// handles signals; the logic lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Set by the linker: -ldflags "-X main.version=..."
var version = "dev"

// exitError carries an exit code to main without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"agent", "tail log files and ship them to aggregators", runAgent},
		{"aggregator", "receive batches from agents, store them, serve sinks", runAggregator},
		{"sink", "consume topics from aggregators into files", runSink},
		{"cat", "print records stored on aggregators", runCat},
		{"status", "agents, partitions and sinks' lag of aggregators", runStatus},
		{"offsets", "list sinks' offsets or reset them (replay): logship offsets list|reset", runOffsets},
		{"config", "config tools: logship config check FILE", runConfig},
		{"log", "inspect an aggregator's data directory: logship log dump|verify", runLog},
		{"demo", "run the whole pipeline in one process on sample logs", runDemo},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "logship ships log files through a durable log, exactly once.\n\nUsage: logship COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'logship COMMAND --help' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		}
		fmt.Fprintf(stderr, "logship %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "logship: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// flags returns a FlagSet for a subcommand with the shared --log-level flag.
func flags(name, usageLine, example string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("logship "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: logship %s %s\n\nExample:\n  %s\n\nFlags:\n", name, usageLine, example)
		fs.PrintDefaults()
	}
	return fs, level
}

// newLogger returns a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// noArgs refuses positional arguments a command does not take.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("version", "", "logship version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logship %s\n", version)
	return nil
}
