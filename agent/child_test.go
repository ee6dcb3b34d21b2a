package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"logship/logstore/batch"
)

// An agent in a child process, for tests that kill it (SIGKILL) and for
// the benchmark that measures it alone: the test binary runs itself with
// childEnv naming a JSON file of childConfig, and TestMain runs the agent
// instead of the tests, until SIGTERM.

const childEnv = "LOGSHIP_AGENT_TEST_CHILD"

type childConfig struct {
	ID, StateDir      string
	Aggregators       []string
	Compression       batch.Compression
	BatchBytes        int
	WindowBytes       int
	ScanInterval      time.Duration
	PollInterval      time.Duration
	PositionsInterval time.Duration
	Inputs            []Input
	LogPath           string
}

func runChild(cfgPath string) int {
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var c childConfig
	if err := json.Unmarshal(b, &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.DiscardHandler)
	if c.LogPath != "" {
		f, err := os.OpenFile(c.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer f.Close()
		log = slog.New(slog.NewTextHandler(f, nil))
	}
	a, err := New(Options{
		ID: c.ID, StateDir: c.StateDir, Aggregators: c.Aggregators, Compression: c.Compression,
		BatchBytes: c.BatchBytes, WindowBytes: c.WindowBytes, ScanInterval: c.ScanInterval,
		PollInterval: c.PollInterval, PositionsInterval: c.PositionsInterval, Inputs: c.Inputs, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild starts an agent process with c; env is added to its
// environment.
func startChild(t testing.TB, dir string, c childConfig, env ...string) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "child.json")
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+cfg), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
