package file

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"logship/internal/statefile"
)

func testMarker() *marker {
	return &marker{
		Topic: "app", Aggregator: "agg-1", Partition: 3, Epoch: 2, Next: 20,
		File: "app/2024/app+agg-1+3+00000000000000000010+00000000000000000019+e2.log.zst",
		Pending: &pendingFile{
			Tmp:  "_tmp/app+agg-1+3+00000000000000000020.00000000deadbeef.tmp",
			File: "app/2024/app+agg-1+3+00000000000000000020+00000000000000000029+e2.log.zst", Next: 30,
		},
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	m := testMarker()
	b := encodeMarker(m)
	if !strings.HasPrefix(string(b), "logship sink-marker v1 crc32c=") {
		t.Fatalf("header: %q", b)
	}
	got, err := decodeMarker("m", b, "app", "agg-1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got.Next != 20 || got.File != m.File || got.Pending == nil || *got.Pending != *m.Pending {
		t.Fatalf("got %+v", got)
	}
	if _, err := decodeMarker("m", b, "app", "agg-1", 30); !errors.Is(err, statefile.ErrCorrupt) {
		t.Fatalf("another partition's marker: %v", err)
	}
}

// TestMarkerDamage flips every byte and cuts at every length: the marker
// is refused as corrupt, never read as another position.
func TestMarkerDamage(t *testing.T) {
	b := encodeMarker(testMarker())
	for i := range b {
		d := []byte(string(b))
		d[i] ^= 0x20
		if m, err := decodeMarker("m", d, "app", "agg-1", 3); err == nil && (m.Next != 20 || m.Pending.Next != 30) {
			t.Fatalf("flip at %d read as %+v", i, m)
		}
	}
	for n := range len(b) {
		if _, err := decodeMarker("m", b[:n], "app", "agg-1", 3); !errors.Is(err, statefile.ErrCorrupt) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
}

func TestMarkerRefusesForeignPaths(t *testing.T) {
	for name, edit := range map[string]func(m *marker){
		"file outside":       func(m *marker) { m.File = "../etc/" + m.File[9:] },
		"file in _tmp":       func(m *marker) { m.File = "_tmp/" + m.File[9:] },
		"next not the name":  func(m *marker) { m.Next = 21 },
		"epoch not the name": func(m *marker) { m.Epoch = 1 },
		"tmp elsewhere":      func(m *marker) { m.Pending.Tmp = "app/" + m.Pending.Tmp[5:] },
		"tmp of another":     func(m *marker) { m.Pending.Tmp = strings.Replace(m.Pending.Tmp, "+3+", "+4+", 1) },
		"pending older":      func(m *marker) { m.Pending.File = strings.Replace(m.Pending.File, "+e2", "", 1) },
		"no file but next":   func(m *marker) { m.File = "" },
	} {
		t.Run(name, func(t *testing.T) {
			m := testMarker()
			edit(m)
			if _, err := decodeMarker("m", encodeMarker(m), "app", "agg-1", 3); !errors.Is(err, statefile.ErrCorrupt) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
}

// TestMarkerOfNothingPublished: the markers the sink writes before its
// first publish completed (an intent; the one settle writes when the
// intent's rename never came) read back as they were written.
func TestMarkerOfNothingPublished(t *testing.T) {
	for name, m := range map[string]*marker{
		"first intent": {Topic: "app", Aggregator: "agg-1", Partition: 3, Pending: testMarker().Pending},
		"settled":      {Topic: "app", Aggregator: "agg-1", Partition: 3},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeMarker("m", encodeMarker(m), "app", "agg-1", 3)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("got %+v, %v; want %+v", got, err, m)
			}
		})
	}
}

func FuzzDecodeMarker(f *testing.F) {
	f.Add(encodeMarker(testMarker()))
	f.Add([]byte("logship sink-marker v1 crc32c=00000000 len=2\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMarker("m", b, "app", "agg-1", 3)
		if err != nil {
			if !errors.Is(err, statefile.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		// What decodes checks and encodes again the same way.
		if _, err := decodeMarker("m", encodeMarker(m), "app", "agg-1", 3); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzJSONString checks appendJSONString against encoding/json: valid
// JSON whose value is the input with each invalid byte as U+FFFD.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\x00\x1f\x7f", "é☃\u2028\u2029", "\xff\xfe", "a\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, b, err)
		}
		var want strings.Builder
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			want.WriteRune(r) // RuneError for a bad byte, n == 1
			i += n
		}
		if got != want.String() {
			t.Fatalf("%q: decoded %q, want %q", s, got, want.String())
		}
		if string(appendJSONString(nil, s)) != string(b) {
			t.Fatal("string and []byte differ")
		}
	})
}

func TestTemplate(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)) // 02:04 UTC
	for _, c := range []struct{ tmpl, want string }{
		{"{topic}", "app"},
		{"", ""},
		{"{topic}/{yyyy}/{mm}/{dd}/{hh}", "app/2024/01/02/02"},
		{"x/{aggregator}-p{partition}/dt={yyyy}{mm}{dd}", "x/agg-1-p7/dt=20240102"},
	} {
		tm, err := ParseTemplate(c.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		got := tm.Render("app", "agg-1", 7, at)
		if got != c.want {
			t.Fatalf("%s: %q, want %q", c.tmpl, got, c.want)
		}
		for i, seg := range strings.Split(got, "/") {
			if got != "" && !tm.matchSegment(i, seg, "app", "agg-1", 7) {
				t.Fatalf("%s: segment %q does not match itself", c.tmpl, seg)
			}
		}
	}
	tm := MustParseTemplate("{topic}/{yyyy}")
	for _, n := range []string{"app2", "ap", "202", "20245", "abcd"} {
		if tm.matchSegment(0, n, "app", "a", 0) && tm.matchSegment(1, n, "app", "a", 0) {
			t.Fatalf("%q matched", n)
		}
	}
	for _, bad := range []string{"/abs/{topic}", "a//b", "a/../b", "{nope}", "{topic", "topic}", "./x"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := MustParseTemplate("{topic}/{hh}").checkReserved("_tmp", "a", 0); err == nil {
		t.Fatal("topic _tmp as a directory accepted")
	}
	if err := MustParseTemplate("{aggregator}").checkReserved("t", "_state", 0); err == nil {
		t.Fatal("aggregator _state as a directory accepted")
	}
	if err := MustParseTemplate("logs/{topic}").checkReserved("_tmp", "a", 0); err != nil {
		t.Fatal(err)
	}
}
