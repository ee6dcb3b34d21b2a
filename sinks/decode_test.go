package sinks_test

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"logship/logstore/batch"
	"logship/sinks"
)

// batches returns three stamped batches holding records 0-4, 5-9, 10-14
// (one per codec), back to back, and the end of each batch.
func batches(t *testing.T) ([]byte, []int) {
	t.Helper()
	var out []byte
	var ends []int
	for i, c := range []batch.Compression{batch.Zstd, batch.None, batch.S2} {
		b, err := batch.NewBuilder(c)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 5 {
			off := int64(i*5 + j)
			b.Add(1000+off, fmt.Appendf(nil, "rec-%d", off))
		}
		start := len(out)
		out, err = b.Build(out, batch.Meta{Agent: "web-01", Topic: "app", Path: "/var/log/app.log", SourceID: 1})
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		batch.Stamp(out[start:], int64(i*5), 1700000000000+int64(i))
		ends = append(ends, len(out))
	}
	return out, ends
}

func decodeAll(t *testing.T, b []byte, from int64) ([]sinks.Record, error) {
	t.Helper()
	dec, err := sinks.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var got []sinks.Record
	err = dec.Decode("agg-1", 3, b, from, func(r *sinks.Record) error {
		c := *r
		c.Data = append([]byte(nil), r.Data...)
		got = append(got, c)
		return nil
	})
	return got, err
}

func TestDecodeRecordsFrom(t *testing.T) {
	b, _ := batches(t)
	for _, from := range []int64{0, 3, 5, 7, 14, 15, 99} {
		t.Run(fmt.Sprint("from=", from), func(t *testing.T) {
			got, err := decodeAll(t, b, from)
			if err != nil {
				t.Fatal(err)
			}
			want := max(0, 15-from)
			if int64(len(got)) != want {
				t.Fatalf("%d records, want %d", len(got), want)
			}
			for i, r := range got {
				off := from + int64(i)
				w := sinks.Record{Aggregator: "agg-1", Topic: "app", Partition: 3, Offset: off, Time: 1000 + off,
					AppendTime: 1700000000000 + off/5, Host: "web-01", Source: "/var/log/app.log"}
				r.Data, w.Data = nil, nil
				if !reflect.DeepEqual(r, w) {
					t.Fatalf("record %d: %+v, want %+v", i, r, w)
				}
				if s := string(got[i].Data); s != fmt.Sprint("rec-", off) {
					t.Fatalf("record %d data %q", i, s)
				}
			}
		})
	}
}

func TestDecodeRecordsPartialTail(t *testing.T) {
	b, ends := batches(t)
	for _, cut := range []int{ends[1] + 1, ends[1] + batch.PrefixSize, ends[2] - 1} {
		got, err := decodeAll(t, b[:cut], 0)
		if err != nil || len(got) != 10 {
			t.Fatalf("cut at %d: %d records, %v; want the 10 of the whole batches", cut, len(got), err)
		}
	}
	if got, err := decodeAll(t, b[:10], 0); err != nil || len(got) != 0 {
		t.Fatalf("a partial first batch: %d records, %v", len(got), err)
	}
}

func TestDecodeRecordsCorrupt(t *testing.T) {
	b, ends := batches(t)
	for _, at := range []int{ends[0] + 2, ends[0] + 40, ends[1] - 1} {
		c := append([]byte(nil), b...)
		c[at] ^= 0x40
		got, err := decodeAll(t, c, 0)
		if !errors.Is(err, sinks.ErrCorruptFetch) {
			t.Fatalf("flip at %d: %v", at, err)
		}
		if len(got) != 5 {
			t.Fatalf("flip at %d: %d records delivered before the damage, want 5", at, len(got))
		}
	}
	// Batches out of order.
	c := append(append([]byte(nil), b[ends[0]:ends[1]]...), b[:ends[0]]...)
	if _, err := decodeAll(t, c, 0); !errors.Is(err, sinks.ErrCorruptFetch) {
		t.Fatalf("batches out of order: %v", err)
	}
}

func TestDecodeRecordsStopsOnError(t *testing.T) {
	b, _ := batches(t)
	dec, _ := sinks.NewDecoder()
	defer dec.Close()
	n := 0
	err := dec.Decode("agg-1", 3, b, 0, func(r *sinks.Record) error {
		if n++; r.Offset == 6 {
			return errTest
		}
		return nil
	})
	if err != errTest || n != 7 {
		t.Fatalf("got %v after %d records", err, n)
	}
}

// manyBatches returns n zstd batches of 100 records each, back to back,
// records numbered from 0.
func manyBatches(t *testing.T, n int) []byte {
	t.Helper()
	bld, err := batch.NewBuilder(batch.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	defer bld.Close()
	var out []byte
	for i := range n {
		for j := range 100 {
			bld.Add(0, fmt.Appendf(nil, "rec-%d", i*100+j))
		}
		start := len(out)
		if out, err = bld.Build(out, batch.Meta{Agent: "web-01", Topic: "app", Path: "/a.log", SourceID: 1}); err != nil {
			t.Fatal(err)
		}
		batch.Stamp(out[start:], int64(i*100), 0)
	}
	return out
}

// One Decoder, many fetches: each stopped by fn at a different record, then
// a whole one. The records come in order whatever the decompressing
// goroutines are doing, and a stopped Decode leaves every buffer to the
// next. With one processor, Decode decodes on its caller's goroutine.
func TestDecoderReuse(t *testing.T) {
	t.Run("parallel", testDecoderReuse)
	t.Run("GOMAXPROCS=1", func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		testDecoderReuse(t)
	})
}

func testDecoderReuse(t *testing.T) {
	b := manyBatches(t, 20)
	dec, err := sinks.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, stopAt := range []int64{0, 1, 99, 100, 250, 1000, 1999} {
		next := int64(0)
		err := dec.Decode("agg-1", 0, b, 0, func(r *sinks.Record) error {
			if r.Offset != next || string(r.Data) != fmt.Sprint("rec-", next) {
				return fmt.Errorf("record %d %q, want %d", r.Offset, r.Data, next)
			}
			next++
			if r.Offset == stopAt {
				return errTest
			}
			return nil
		})
		if err != errTest || next != stopAt+1 {
			t.Fatalf("stop at %d: %v after %d records", stopAt, err, next)
		}
	}
	for _, from := range []int64{0, 150, 1999} {
		next := from
		err := dec.Decode("agg-1", 0, b, from, func(r *sinks.Record) error {
			if r.Offset != next || string(r.Data) != fmt.Sprint("rec-", next) {
				return fmt.Errorf("record %d %q, want %d", r.Offset, r.Data, next)
			}
			next++
			return nil
		})
		if err != nil || next != 2000 {
			t.Fatalf("from %d: %v, %d records", from, err, next-from)
		}
	}
}

// Damage after many good batches: every record before it is delivered, in
// order, then the error.
func TestDecoderCorruptAfterMany(t *testing.T) {
	b := manyBatches(t, 20)
	pos := 0
	for range 15 {
		size, err := batch.Size(b[pos:])
		if err != nil {
			t.Fatal(err)
		}
		pos += size
	}
	b[pos+40] ^= 1 // in the 16th batch
	dec, _ := sinks.NewDecoder()
	defer dec.Close()
	next := int64(0)
	err := dec.Decode("agg-1", 0, b, 0, func(r *sinks.Record) error {
		if r.Offset != next {
			t.Fatalf("record %d, want %d", r.Offset, next)
		}
		next++
		return nil
	})
	if !errors.Is(err, sinks.ErrCorruptFetch) || !errors.Is(err, batch.ErrChecksum) || next != 1500 {
		t.Fatalf("%v after %d records; want a checksum error after 1500", err, next)
	}
}

// A panic in fn (a writer's bug that a caller recovers) still stops the
// decompressing goroutines before Decode unwinds: none outlives it, and
// none still writes a buffer that the next Decode uses.
func TestDecoderPanicInFn(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	b := manyBatches(t, 6)
	dec, err := sinks.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		dec.Decode("agg-1", 0, b, 0, func(*sinks.Record) error { panic("writer bug") })
	}()
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("goroutines left by a Decode whose fn panicked: %v", err)
	}
	n := 0
	if err := dec.Decode("agg-1", 0, b, 0, func(*sinks.Record) error { n++; return nil }); err != nil || n != 600 {
		t.Fatalf("the next Decode: %v, %d records", err, n)
	}
}
