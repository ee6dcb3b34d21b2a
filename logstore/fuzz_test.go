package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"logship/logstore/batch"
)

var update = flag.Bool("update", false, "rewrite the seed corpus under testdata/fuzz")

// FuzzIndex feeds the index decoders arbitrary bytes: they never panic,
// and whatever they accept encodes back to the same bytes and keeps the
// index invariants.
func FuzzIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, err := decodeIndexEntry(data); err == nil {
			if got := appendIndexEntry(nil, e); !bytes.Equal(got, data[:indexEntrySize]) {
				t.Fatalf("entry %+v encodes to %x, decoded from %x", e, got, data[:indexEntrySize])
			}
		}
		var base int64
		if len(data) >= hdrOffBase+8 {
			base = int64(binary.BigEndian.Uint64(data[hdrOffBase:]))
		}
		const segSize = 1 << 20
		entries, err := decodeIndex(data, base, segSize)
		if err != nil {
			if !errors.Is(err, errIndex) {
				t.Fatalf("error %v does not wrap errIndex", err)
			}
			return
		}
		prev := indexEntry{0, fileHeaderSize}
		for _, e := range entries {
			if e.rel <= prev.rel || e.pos <= prev.pos || e.pos >= segSize {
				t.Fatalf("accepted entry %+v after %+v", e, prev)
			}
			prev = e
		}
		if got := encodeIndex(base, entries); !bytes.Equal(got, data) {
			t.Fatalf("accepted index does not encode back")
		}
	})
}

// FuzzRecover puts arbitrary bytes after three good batches in a segment
// and opens the store. It never panics. As the last segment, the good
// batches are kept and the rest is cut (or kept, if it is good batches);
// as an older segment, anything but good batches that end where the next
// segment starts is a *CorruptionError.
func FuzzRecover(f *testing.F) {
	prefix, _ := fuzzPrefix(f)
	f.Fuzz(func(t *testing.T, sealed bool, tail []byte) {
		fs := newMemFS()
		pd := "/store/" + testTopic + "-0"
		fs.MkdirAll(pd)
		path := filepath.Join(pd, segmentName(0))
		data := append(bytes.Clone(prefix), tail...)
		writeMem(t, fs, path, data)
		if sealed {
			writeMem(t, fs, filepath.Join(pd, segmentName(3)), encodeFileHeader(segmentMagic, segmentVersion, 3))
		}
		s, err := open("/store", testOpts(1<<20), fs)
		if sealed {
			if len(tail) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.Path != path || ce.Offset < int64(len(prefix)) {
				t.Fatalf("Open: %v; want corruption in %s after byte %d", err, path, len(prefix))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		p := s.Lookup(testTopic, 0)
		if p.End() < 3 {
			t.Fatalf("End() = %d: good batches lost", p.End())
		}
		kept, _ := fs.ReadFile(path)
		broken, _ := fs.ReadFile(path + brokenSuffix)
		if !bytes.Equal(append(kept, broken...), data) {
			t.Fatalf("kept %d + cut %d bytes != %d bytes", len(kept), len(broken), len(data))
		}
		if err := p.Scan(func(*batch.Header) error { return nil }); err != nil {
			t.Fatal(err)
		}
		for off := range p.End() {
			if _, err := p.Read(off, 1); err != nil {
				t.Fatal(err)
			}
		}
		b := makeBatch(t, testTopic, 1, 1, 5)
		h, _ := batch.Parse(b)
		res, err := p.Append(b, &h, nil)
		if err != nil || p.WaitDurable(res.Next) != nil {
			t.Fatal(err)
		}
		if got, err := p.Read(res.BaseOffset, 1); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}

func writeMem(t testing.TB, fs *memFS, path string, data []byte) {
	t.Helper()
	fl, err := fs.Create(path)
	if err == nil {
		_, err = fl.WriteAt(data, 0)
	}
	if err == nil {
		err = fl.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// stamped returns a batch of testTopic stamped at base.
func stamped(t testing.TB, seq, records int, base int64) []byte {
	b := makeBatch(t, testTopic, seq, records, 12)
	batch.Stamp(b, base, fixedNow().UnixMilli())
	return b
}

// fuzzPrefix returns a segment of base 0 holding three good batches (1, 1
// and 1 records), and the batch that would come next.
func fuzzPrefix(t testing.TB) (prefix, next []byte) {
	prefix = encodeFileHeader(segmentMagic, segmentVersion, 0)
	for i := range 3 {
		prefix = append(prefix, stamped(t, i, 1, int64(i))...)
	}
	return prefix, stamped(t, 3, 2, 3)
}

type seed []any

// fuzzSeeds are the seed corpus of each fuzz target, written to
// testdata/fuzz by TestFuzzCorpus -update.
func fuzzSeeds(t testing.TB) map[string][]seed {
	_, next := fuzzPrefix(t)
	wrongBase := stamped(t, 3, 2, 7)
	ff := bytes.Repeat([]byte{0xff}, 64)
	recov := []seed{
		{false, []byte{}},
		{false, next},
		{false, append(bytes.Clone(next), stamped(t, 4, 1, 5)...)},
		{false, next[:len(next)-1]},
		{false, next[:batch.PrefixSize]},
		{false, wrongBase},
		{false, make([]byte, 100)},
		{false, ff},
		{true, []byte{}},
		{true, next},
		{true, next[:10]},
	}
	entries := []indexEntry{{1, 200}, {5, 4000}, {9, 70000}}
	index := []seed{
		{[]byte{}},
		{encodeIndex(0, nil)},
		{encodeIndex(1000, entries)},
		{encodeIndex(0, entries)[:fileHeaderSize+indexEntrySize+5]},
		{appendIndexEntry(nil, entries[0])},
		{encodeIndex(0, []indexEntry{{5, 100}, {1, 200}})},
	}
	return map[string][]seed{"FuzzRecover": recov, "FuzzIndex": index}
}

// corpusFile encodes a seed in the format of go test's corpus files.
func corpusFile(s seed) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range s {
		switch v := v.(type) {
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		default:
			panic(fmt.Sprintf("BUG: seed of type %T", v))
		}
	}
	return b.Bytes()
}

// TestFuzzCorpus checks that the seed corpus in testdata/fuzz is the one
// fuzzSeeds describes (the formats may not drift from it unnoticed);
// -update rewrites it.
func TestFuzzCorpus(t *testing.T) {
	for name, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", name)
		if *update {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for i, s := range seeds {
			path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			want := corpusFile(s)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is stale or missing (%v): run go test -run TestFuzzCorpus -update", path, err)
			}
		}
	}
}
