package config

import (
	"reflect"
	"strings"
	"testing"
)

// decodeTarget exercises every kind of field the decoder supports.
type decodeTarget struct {
	Name  string            `toml:"name"`
	On    bool              `toml:"on"`
	Ratio float64           `toml:"ratio"`
	Tags  map[string]string `toml:"tags"`
	Inner struct {
		Path string `toml:"path"`
	} `toml:"inner"`
	decodeEmbedded
}

type decodeEmbedded struct {
	Extra string `toml:"extra"`
}

func decodeString(t *testing.T, src string) (decodeTarget, *checker) {
	t.Helper()
	f, err := parse("x.toml", src)
	if err != nil {
		t.Fatal(err)
	}
	var v decodeTarget
	c := newChecker(f.name)
	c.lines, c.given = f.lines, map[string]bool{}
	decoder{c}.table(f.data, reflect.ValueOf(&v).Elem(), "")
	return v, c
}

func TestDecodeKinds(t *testing.T) {
	v, c := decodeString(t, `name = "a"
on = true
ratio = 2
tags = { class = "SimpleStrategy", replication_factor = 3 }
extra = "e"
[inner]
path = "/p"
`)
	if err := c.err(); err != nil {
		t.Fatal(err)
	}
	if v.Name != "a" || !v.On || v.Ratio != 2 || v.Extra != "e" || v.Inner.Path != "/p" ||
		v.Tags["class"] != "SimpleStrategy" || v.Tags["replication_factor"] != "3" {
		t.Fatalf("decoded %+v", v)
	}
	if !c.given["inner.path"] || !c.given["extra"] {
		t.Fatalf("given = %v", c.given)
	}
}

func TestDecodeKindErrors(t *testing.T) {
	_, c := decodeString(t, `on = "yes"
ratio = "x"
inner = 3
tags = { a = true }
[bogus]
`)
	err := c.err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`x.toml:1: on: want true or false, got string "yes"`,
		`x.toml:2: ratio: want a number, got string "x"`,
		`inner: want a table ([inner]), got integer 3`,
		`tags.a: want a string, got boolean true`,
		`unknown key "bogus"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}
