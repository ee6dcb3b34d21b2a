// Package sinktest holds helpers for the sinks' tests: a slog handler that
// keeps every record, so that a test can check that a WARN was logged (or
// wait for one), and checks of a file sink's published output.
package sinktest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Entry is one logged record, flattened.
type Entry struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// Log collects records. Safe for concurrent use.
type Log struct {
	tb      testing.TB
	mu      sync.Mutex
	entries []Entry
	done    bool
}

// New returns a Log and a logger that writes to it; tb's log gets a copy
// of each record until the test ends.
func New(tb testing.TB) (*Log, *slog.Logger) {
	l := &Log{tb: tb}
	tb.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l, slog.New(&handler{l: l})
}

// Find returns the entries at level or above whose message contains msg.
func (l *Log) Find(level slog.Level, msg string) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	for _, e := range l.entries {
		if e.Level >= level && strings.Contains(e.Msg, msg) {
			out = append(out, e)
		}
	}
	return out
}

// Wait polls until an entry at level or above contains msg, failing the
// test after d.
func (l *Log) Wait(level slog.Level, msg string, d time.Duration) Entry {
	l.tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if e := l.Find(level, msg); len(e) > 0 {
			return e[0]
		}
		if time.Now().After(deadline) {
			l.tb.Fatalf("no %s log %q within %s", level, msg, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type handler struct {
	l     *Log
	attrs []slog.Attr
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	e := Entry{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	add := func(a slog.Attr) bool {
		e.Attrs[a.Key] = a.Value.String()
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.l.entries = append(h.l.entries, e)
	if !h.l.done {
		h.l.tb.Log(b.String())
	}
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *handler) WithGroup(string) slog.Handler { return h }
