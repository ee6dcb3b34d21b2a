package sinktest

import (
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"logship/sinks/file"
)

// Line is the data of the test record at offset of a partition.
func Line(topic string, part int, offset int64) string {
	return fmt.Sprintf("%s-p%d-rec%06d", topic, part, offset)
}

// Lines returns Line for offsets [from, to).
func Lines(topic string, part int, from, to int64) []string {
	var out []string
	for o := from; o < to; o++ {
		out = append(out, Line(topic, part, o))
	}
	return out
}

// ReadFunc reads a whole file of an FS.
type ReadFunc func(name string) ([]byte, error)

// Record is one line of a published file, with the offset and the reset
// epoch its file's name gives it.
type Record struct {
	Offset int64
	Epoch  uint64
	Line   string
	File   string
}

// Published reads the published files of one partition in epoch and
// offset order and returns their records. It fails the test when a file's
// line count differs from its name's range or when files of one epoch
// overlap (a record repeated; files of a later epoch are a replay). Names
// that do not parse are ignored, as the sink ignores them.
func Published(tb testing.TB, fsys file.FS, read ReadFunc, dir, topic, agg string, part int) []Record {
	tb.Helper()
	files, _, err := file.List(fsys, dir, topic)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Record
	for _, f := range files {
		if f.Aggregator != agg || f.Partition != part {
			continue
		}
		b, err := read(path.Join(dir, topic, f.String()))
		if err != nil {
			tb.Fatal(err)
		}
		s := string(b)
		if !strings.HasSuffix(s, "\n") {
			tb.Fatalf("%s does not end with a newline: %q", f, s)
		}
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if int64(len(lines)) != f.Last-f.First+1 {
			tb.Fatalf("%s holds %d lines, its name says %d", f, len(lines), f.Last-f.First+1)
		}
		if n := len(out); n > 0 && out[n-1].Epoch == f.Epoch && out[n-1].Offset >= f.First {
			tb.Fatalf("%s overlaps %s: records repeated", f, out[n-1].File)
		}
		for i, l := range lines {
			out = append(out, Record{Offset: f.First + int64(i), Epoch: f.Epoch, Line: l, File: f.String()})
		}
	}
	return out
}

// CheckExactlyOnce checks that the records hold exactly the test lines of
// the given offsets, in order.
func CheckExactlyOnce(tb testing.TB, recs []Record, topic string, part int, offsets []int64) {
	tb.Helper()
	if len(recs) != len(offsets) {
		tb.Fatalf("%d records published, want %d: %v", len(recs), len(offsets), summary(recs))
	}
	for i, r := range recs {
		if r.Offset != offsets[i] || r.Line != Line(topic, part, offsets[i]) {
			tb.Fatalf("record %d: offset %d %q (in %s), want offset %d %q", i, r.Offset, r.Line, r.File, offsets[i], Line(topic, part, offsets[i]))
		}
	}
}

// Range returns the offsets [from, to).
func Range(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

func summary(recs []Record) string {
	var b strings.Builder
	last := ""
	for _, r := range recs {
		if r.File != last {
			fmt.Fprintf(&b, "\n  %s", r.File)
			last = r.File
		}
	}
	return b.String()
}

// Eventually polls cond every few milliseconds until it is true, failing
// the test after d.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
