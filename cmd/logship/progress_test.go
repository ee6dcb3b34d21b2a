package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := &progress{label: "verify", total: 4 << 20, width: 10, start: t0}
	if got, want := p.line(1<<20, t0.Add(time.Second)), "verify [==>       ]  25%  1.0 MiB / 4.0 MiB  1.0 MiB/s"; got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := p.line(5<<20, t0.Add(time.Second)); !strings.Contains(got, "[==========] 100%") {
		t.Fatalf("past the total: %q", got)
	}
}

// TestProgressQuietOffTerminal: a bar on a pipe or a file draws nothing.
func TestProgressQuietOffTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "dump", 100)
	p.set(50)
	p.finish()
	if buf.Len() != 0 {
		t.Fatalf("drew %q on a non-terminal", buf.String())
	}
}

// TestProgressRedraws: on a terminal, at most one redraw per interval,
// each starting with a carriage return, and finish erases the line.
func TestProgressRedraws(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := &progress{w: &buf, label: "x", total: 100, width: 4, start: now, nowFun: func() time.Time { return now }}
	p.set(10)
	p.set(20) // same instant: not drawn
	now = now.Add(redrawEvery)
	p.set(30)
	p.finish()
	if got := strings.Count(buf.String(), "\r"); got != 3 || !strings.HasSuffix(buf.String(), "\r\033[K") {
		t.Fatalf("output %q", buf.String())
	}
}
