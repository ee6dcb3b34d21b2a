package batch

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"logship/internal/testlogs"
)

func build(t testing.TB, c Compression, lines ...string) []byte {
	t.Helper()
	b, err := NewBuilder(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i, l := range lines {
		b.Add(int64(1000+i), []byte(l))
	}
	out, err := b.Build(nil, Meta{Agent: "web-01", Topic: "app", Path: "/var/log/app.log", SourceID: 42, RangeStart: 10, RangeEnd: 99})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Compression{None, Zstd, S2} {
		t.Run(c.String(), func(t *testing.T) {
			lines := []string{"first line", "", "third line with more bytes " + string(bytes.Repeat([]byte("x"), 300))}
			b := build(t, c, lines...)
			Stamp(b, 77, 1234)
			h, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.BaseOffset != 77 || h.AppendTime != 1234 || h.Count != 3 || h.Topic != "app" || h.Agent != "web-01" ||
				h.Path != "/var/log/app.log" || h.SourceID != 42 || h.RangeStart != 10 || h.RangeEnd != 99 ||
				h.FirstTime != 1000 || h.LastTime != 1002 || h.Compression != c || h.Size != len(b) {
				t.Fatalf("header %+v", h)
			}
			d, err := NewDecoder()
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var got []string
			err = d.Decode(b, &h, func(r Record) error {
				if r.Offset != 77+int64(len(got)) || r.Time != 1000+int64(len(got)) {
					return fmt.Errorf("record %d: offset %d time %d", len(got), r.Offset, r.Time)
				}
				got = append(got, string(r.Data))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(lines) {
				t.Fatalf("got %q", got)
			}
		})
	}
}

// TestEveryFlipIsCaught flips each bit of a stamped batch in turn: Parse
// must refuse every one of them.
func TestEveryFlipIsCaught(t *testing.T) {
	b := build(t, Zstd, "a", "bb", "ccc")
	Stamp(b, 5, 6)
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			if _, err := Parse(c); err == nil {
				t.Fatalf("flip of byte %d bit %d accepted", i, bit)
			}
		}
	}
}

func TestTruncated(t *testing.T) {
	b := build(t, S2, "hello", "world")
	for n := 0; n < len(b); n++ {
		if _, err := Parse(b[:n]); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"app": true, "nginx-access": true, "a.b_c": true, "": false, ".": false, "..": false,
		"../etc": false, "a/b": false, "a b": false, string(bytes.Repeat([]byte("x"), 129)): false,
	} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build(f, None, "x"))
	f.Add(build(f, Zstd, "a", "b"))
	f.Add(build(f, S2, "s2 line"))
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseUnchecked(b)
		if err != nil {
			return
		}
		if h.Size > len(b) {
			return
		}
		_ = d.Decode(b[:h.Size], &h, func(Record) error { return nil })
	})
}

// BenchmarkBuild builds 256 KiB batches of 150-byte access-log lines with
// each codec. The lines vary as real ones do (addresses, paths, ids,
// statuses, sizes, agents), so that the compression speed and ratio are
// those a user gets, not those of one line repeated:
//
//	go test -run '^$' -bench Build -count 6 ./logstore/batch/
func BenchmarkBuild(b *testing.B) {
	lines := accessLines(256<<10/150, 150)
	var raw int64
	for _, l := range lines {
		raw += int64(len(l)) + 1
	}
	for _, c := range []Compression{None, Zstd, S2} {
		b.Run("codec="+c.String(), func(b *testing.B) {
			bl, _ := NewBuilder(c)
			var dst []byte
			b.SetBytes(raw)
			b.ReportAllocs()
			for b.Loop() {
				for j, l := range lines {
					bl.Add(int64(j), l)
				}
				var err error
				dst, err = bl.Build(dst[:0], Meta{Topic: "t"})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(raw)/float64(len(dst)), "ratio")
		})
	}
}

// accessLines makes n access-log lines of about size bytes, from a fixed
// seed.
func accessLines(n, size int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(testlogs.AccessLine(r, i, size))
	}
	return out
}
