package sinktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

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

// Published reads the published files of one partition under
// dir/<topic>/ (the default layout) in epoch and offset order and returns
// their records. It fails the test when a file's record count differs
// from its name's range or when files of one epoch overlap (a record
// repeated; files of a later epoch are a replay). Names that do not parse
// are ignored, as the sink ignores them.
func Published(tb testing.TB, fsys file.FS, read ReadFunc, dir, topic, agg string, part int) []Record {
	tb.Helper()
	return PublishedAt(tb, fsys, read, dir, file.DefaultPath, topic, agg, part)
}

// PublishedAt is Published for files laid out by the path template tmpl
// under dir; it decodes every format and compression.
func PublishedAt(tb testing.TB, fsys file.FS, read ReadFunc, dir, tmpl, topic, agg string, part int) []Record {
	tb.Helper()
	t, err := file.ParseTemplate(tmpl)
	if err != nil {
		tb.Fatal(err)
	}
	files, _, err := file.Scan(fsys, dir, t, topic, agg, part)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Record
	for _, f := range files {
		b, err := read(path.Join(dir, f.Path()))
		if err != nil {
			tb.Fatal(err)
		}
		lines, offsets := Decode(tb, f.Name, b)
		n := f.Name
		if int64(len(lines)) != n.Last-n.First+1 {
			tb.Fatalf("%s holds %d records, its name says %d", n, len(lines), n.Last-n.First+1)
		}
		if k := len(out); k > 0 && out[k-1].Epoch == n.Epoch && out[k-1].Offset >= n.First {
			tb.Fatalf("%s overlaps %s: records repeated", n, out[k-1].File)
		}
		for i, l := range lines {
			off := n.First + int64(i)
			if offsets != nil && offsets[i] != off {
				tb.Fatalf("%s: record %d says offset %d, want %d", n, i, offsets[i], off)
			}
			out = append(out, Record{Offset: off, Epoch: n.Epoch, Line: l, File: n.String()})
		}
	}
	return out
}

// Decompress returns a published file's bytes decompressed as its name
// says.
func Decompress(tb testing.TB, n file.FileName, b []byte) []byte {
	tb.Helper()
	switch n.Compression() {
	case file.CompressionGzip:
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			tb.Fatalf("%s: %v", n, err)
		}
		if b, err = io.ReadAll(r); err != nil {
			tb.Fatalf("%s: %v", n, err)
		}
	case file.CompressionZstd:
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			tb.Fatal(err)
		}
		b, err = d.DecodeAll(b, nil)
		d.Close()
		if err != nil {
			tb.Fatalf("%s: %v", n, err)
		}
	}
	return b
}

// JSONRecord is a record of the json format.
type JSONRecord struct {
	Aggregator string    `json:"aggregator"`
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Time       time.Time `json:"time"`
	AppendTime time.Time `json:"append_time"`
	Host       string    `json:"host"`
	Source     string    `json:"source"`
	Data       string    `json:"data"`
}

// Decode decompresses a published file's bytes as its name says and
// returns its records' data, and for the json format their offsets
// (checking that each record names the file's partition).
func Decode(tb testing.TB, n file.FileName, b []byte) (data []string, offsets []int64) {
	tb.Helper()
	b = Decompress(tb, n, b)
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		tb.Fatalf("%s does not end with a newline: %q", n, s[max(0, len(s)-100):])
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if n.Format() != file.FormatJSON {
		return lines, nil
	}
	for i, l := range lines {
		var r JSONRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			tb.Fatalf("%s: line %d: %v: %q", n, i, err, l)
		}
		if r.Topic != n.Topic || r.Aggregator != n.Aggregator || r.Partition != n.Partition {
			tb.Fatalf("%s: line %d is of %s/%s/%d", n, i, r.Aggregator, r.Topic, r.Partition)
		}
		lines[i] = r.Data
		offsets = append(offsets, r.Offset)
	}
	return lines, offsets
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
