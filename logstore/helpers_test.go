package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"logship/logstore/batch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTopic = "app-logs" // has a '-' on purpose: the id is after the last one

// fixedNow is the clock of every test store: append times are predictable.
func fixedNow() time.Time { return time.UnixMilli(1_700_000_000_000) }

// testOpts are small options for tests.
func testOpts(segmentBytes int64) Options {
	return Options{SegmentBytes: segmentBytes, IndexIntervalBytes: 256, Now: fixedNow}
}

// makeBatch builds an unstamped batch of topic with records records of
// about recSize bytes; seq makes it unique and goes into its source range.
func makeBatch(t testing.TB, topic string, seq, records, recSize int) []byte {
	t.Helper()
	bl, err := batch.NewBuilder(batch.None)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	for i := range records {
		rec := fmt.Sprintf("seq=%d rec=%d ", seq, i)
		if pad := recSize - len(rec); pad > 0 {
			rec += strings.Repeat("x", pad)
		}
		bl.Add(int64(seq*1000+i), []byte(rec))
	}
	b, err := bl.Build(nil, batch.Meta{
		Agent: "agent-1", Topic: topic, Path: "/var/log/app.log",
		SourceID: uint64(seq), RangeStart: int64(seq) * 1000, RangeEnd: int64(seq)*1000 + 999,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stored is a batch as the log holds it.
type stored struct {
	base  int64
	count int
	data  []byte
}

func (s stored) next() int64 { return s.base + int64(s.count) }

// appendBatch appends b to p and waits for it to be durable.
func appendBatch(t testing.TB, p *Partition, b []byte) stored {
	t.Helper()
	h, err := batch.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Append(b, &h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || res.BaseOffset != h.BaseOffset || res.Next != h.NextOffset() {
		t.Fatalf("append: %+v, header %+v", res, h)
	}
	if err := p.WaitDurable(res.Next); err != nil {
		t.Fatal(err)
	}
	return stored{base: res.BaseOffset, count: h.Count, data: bytes.Clone(b)}
}

// appendMany appends n batches of 1 to 4 records of varying sizes.
func appendMany(t testing.TB, p *Partition, first, n int) []stored {
	t.Helper()
	var out []stored
	for i := first; i < first+n; i++ {
		out = append(out, appendBatch(t, p, makeBatch(t, p.Topic(), i, 1+i%4, 20+(i*37)%90)))
	}
	return out
}

func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openFS(t testing.TB, dir string, opts Options, fsys fileSystem) *Store {
	t.Helper()
	s, err := open(dir, opts, fsys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func partitionT(t testing.TB, s *Store, topic string, id int) *Partition {
	t.Helper()
	p, err := s.Partition(topic, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func closeT(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkLog checks everything a reader can see in p against want: Start,
// End, a Read from every offset with tiny and large limits, the edges, and
// Scan.
func checkLog(t testing.TB, p *Partition, want []stored) {
	t.Helper()
	start, end := int64(0), int64(0)
	if len(want) > 0 {
		start, end = want[0].base, want[len(want)-1].next()
	}
	if p.Start() != start || p.End() != end {
		t.Fatalf("Start, End = %d, %d; want %d, %d", p.Start(), p.End(), start, end)
	}
	for i, w := range want {
		for off := w.base; off < w.next(); off++ {
			got, err := p.Read(off, 1)
			if err != nil {
				t.Fatalf("Read(%d, 1): %v", off, err)
			}
			if !bytes.Equal(got, w.data) {
				t.Fatalf("Read(%d, 1): got %d bytes, want batch %d (base %d, %d bytes)", off, len(got), i, w.base, len(w.data))
			}
			got, err = p.Read(off, 1<<20)
			if err != nil {
				t.Fatalf("Read(%d, 1MiB): %v", off, err)
			}
			checkBatches(t, got, want[i:])
		}
	}
	if got, err := p.Read(end, 100); got != nil || err != nil {
		t.Fatalf("Read(End) = %d bytes, %v; want nil, nil", len(got), err)
	}
	for _, off := range []int64{end + 1, start - 1} {
		_, err := p.Read(off, 100)
		var oe *OutOfRangeError
		if !errors.As(err, &oe) || !errors.Is(err, ErrOutOfRange) || oe.Offset != off || oe.Start != start || oe.End != end ||
			oe.Topic != p.Topic() || oe.Partition != p.ID() {
			t.Fatalf("Read(%d) error %v (%+v); want out of range [%d, %d]", off, err, oe, start, end)
		}
	}
	var scanned []int64
	if err := p.Scan(func(h *batch.Header) error {
		scanned = append(scanned, h.BaseOffset)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(scanned) != len(want) {
		t.Fatalf("Scan saw %d batches, want %d", len(scanned), len(want))
	}
	for i, b := range scanned {
		if b != want[i].base {
			t.Fatalf("Scan batch %d at %d, want %d", i, b, want[i].base)
		}
	}
}

// checkBatches checks that got is one or more whole batches equal to the
// first ones of want.
func checkBatches(t testing.TB, got []byte, want []stored) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("no batch read")
	}
	for i := 0; len(got) > 0; i++ {
		if i >= len(want) || !bytes.HasPrefix(got, want[i].data) {
			t.Fatalf("batch %d of the read differs from the one appended", i)
		}
		h, err := batch.Parse(got[:len(want[i].data)])
		if err != nil || h.BaseOffset != want[i].base { // the bytes compared include the append time
			t.Fatalf("batch %d: %v %+v", i, err, h)
		}
		got = got[len(want[i].data):]
	}
}

// segmentFiles returns the .log files of a partition directory, in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+logSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// positions returns the byte position of each batch in a segment file.
func positions(t testing.TB, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for pos := int64(fileHeaderSize); pos < int64(len(data)); {
		n, err := batch.CheckPrefix(data[pos:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, pos, err)
		}
		out = append(out, pos)
		pos += int64(n)
	}
	return out
}

func partDir(dir string) string { return filepath.Join(dir, testTopic+"-3") }
