package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"logship/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, level := flags("demo", "[--dir DIR] [--lines N]", "logship demo --dir /tmp/logship-demo", stderr)
	dir := fs.String("dir", "", "directory for sample logs, the aggregator's data and the sink's files (default: a new temporary directory)")
	lines := fs.Int("lines", 100_000, "lines per sample file")
	quiet := fs.Bool("quiet", false, "print only the summary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	// Components log at warn and above unless asked: the demo prints its own progress.
	lvl := *level
	if lvl == "info" {
		lvl = "warn"
	}
	log, err := newLogger(stderr, lvl)
	if err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "logship-demo-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	out := stdout
	if *quiet {
		out = io.Discard
	}
	fmt.Fprintf(out, "demo: working in %s\n", *dir)
	s, err := demo.Run(ctx, demo.Options{Dir: *dir, LinesPerFile: *lines, Out: out, Logger: log})
	if s != nil {
		s.Print(stdout)
	}
	if err != nil {
		return fmt.Errorf("FAILED: %w", err)
	}
	fmt.Fprintf(stdout, "\nOK: every line arrived exactly once. Look around in %s\n", *dir)
	return nil
}
