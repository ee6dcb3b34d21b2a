package file

import (
	"strings"
	"testing"
)

func TestNameRoundTrip(t *testing.T) {
	n := FileName{Topic: "nginx-access", Aggregator: "agg.1", Partition: 12, First: 7, Last: 9223372036854775807}
	s := n.String()
	want := "nginx-access+agg.1+12+00000000000000000007+09223372036854775807.log"
	if s != want {
		t.Fatalf("got %s, want %s", s, want)
	}
	got, err := ParseName(s)
	if err != nil || got != n {
		t.Fatalf("ParseName(%s) = %+v, %v", s, got, err)
	}
	n.Epoch = 12
	if s, want := n.String(), strings.TrimSuffix(want, ".log")+"+e12.log"; s != want {
		t.Fatalf("with an epoch: got %s, want %s", s, want)
	}
	if got, err := ParseName(n.String()); err != nil || got != n {
		t.Fatalf("ParseName(%s) = %+v, %v", n, got, err)
	}
}

func TestParseNameIsStrict(t *testing.T) {
	good := "app+agg+3+00000000000000000010+00000000000000000019.log"
	if _, err := ParseName(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"no suffix":          strings.TrimSuffix(good, ".log"),
		"other suffix":       strings.TrimSuffix(good, ".log") + ".txt",
		"tmp suffix":         strings.TrimSuffix(good, ".log") + ".tmp",
		"leading zero":       "app+agg+03+00000000000000000010+00000000000000000019.log",
		"signed partition":   "app+agg++3+00000000000000000010+00000000000000000019.log",
		"plus sign":          "app+agg+3+0000000000000000+010+00000000000000000019.log",
		"19 digits":          "app+agg+3+0000000000000000010+00000000000000000019.log",
		"21 digits":          "app+agg+3+000000000000000000010+00000000000000000019.log",
		"first after last":   "app+agg+3+00000000000000000020+00000000000000000019.log",
		"hex offset":         "app+agg+3+0000000000000000000a+00000000000000000019.log",
		"overflow":           "app+agg+3+99999999999999999999+99999999999999999999.log",
		"four fields":        "app+3+00000000000000000010+00000000000000000019.log",
		"six fields":         "app+x+agg+3+00000000000000000010+00000000000000000019.log",
		"empty topic":        "+agg+3+00000000000000000010+00000000000000000019.log",
		"dot dot aggregator": "app+..+3+00000000000000000010+00000000000000000019.log",
		"space":              "app+ag g+3+00000000000000000010+00000000000000000019.log",
		"huge partition":     "app+agg+4294967296+00000000000000000010+00000000000000000019.log",
		"editor backup":      good + "~",
		"epoch zero":         strings.TrimSuffix(good, ".log") + "+e0.log",
		"epoch leading zero": strings.TrimSuffix(good, ".log") + "+e01.log",
		"epoch no e":         strings.TrimSuffix(good, ".log") + "+1.log",
		"epoch signed":       strings.TrimSuffix(good, ".log") + "+e-1.log",
		"seven fields":       strings.TrimSuffix(good, ".log") + "+e1+e2.log",
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			if n, err := ParseName(s); err == nil {
				t.Fatalf("ParseName(%q) = %+v, want an error", s, n)
			}
		})
	}
}

func TestTmpNames(t *testing.T) {
	p := partitionPrefix("app", "agg", 1)
	n := tmpName("app", "agg", 1, 42, 0xdeadbeef)
	if n != "app+agg+1+00000000000000000042.00000000deadbeef.tmp" {
		t.Fatal(n)
	}
	if !isTmpName(n, p) || !isAnyTmpName(n) {
		t.Fatal("own tmp name not recognised")
	}
	if isTmpName(tmpName("app", "agg", 10, 42, 1), p) {
		t.Fatal("partition 10's file taken for partition 1's")
	}
	for _, s := range []string{
		"app+agg+1+00000000000000000042.00000000DEADBEEF.tmp",
		"app+agg+1+00000000000000000042.00000000deadbeef.log",
		"app+agg+1+0000000000000000042.00000000deadbeef.tmp",
		"app+agg+1+00000000000000000042+00000000000000000042.log",
	} {
		if isTmpName(s, p) || isAnyTmpName(s) {
			t.Errorf("%s taken for a temporary file", s)
		}
	}
}
