package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// tomlKeys returns the toml keys of t's fields, nested tables as
// "table.key", the fields of embedded structs as the table's own.
func tomlKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case tag == "" && f.Anonymous && ft.Kind() == reflect.Struct:
			tomlKeys(ft, prefix, out)
		case tag == "":
		case ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() && ft.Name() != "Size" && ft.Name() != "Duration":
			out[prefix+tag] = true
			tomlKeys(ft, prefix+tag+".", out)
		default:
			out[prefix+tag] = true
		}
	}
}

// TestExamplesDocumentEveryKey: every key of every kind of config appears
// in the example files of that kind (as a setting or in a comment), so an
// operator finds each one documented.
func TestExamplesDocumentEveryKey(t *testing.T) {
	for _, c := range []struct {
		kind    string
		typ     reflect.Type
		refused []string // keys the kind has but refuses (shared structs)
	}{
		{"agent", reflect.TypeFor[Agent](), nil},
		{"aggregator", reflect.TypeFor[Aggregator](), []string{"tls.server_name", "tls.enabled"}},
		{"sinks", reflect.TypeFor[Sinks](), nil},
	} {
		t.Run(c.kind, func(t *testing.T) {
			files, _ := filepath.Glob(filepath.Join(testdata, c.kind+"*.toml"))
			var text strings.Builder
			for _, f := range files {
				if strings.HasSuffix(f, ".bad.toml") {
					continue
				}
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				text.Write(b)
			}
			keys := map[string]bool{}
			tomlKeys(c.typ, "", keys)
			for _, k := range c.refused {
				delete(keys, k)
			}
			for k := range keys {
				name := k[strings.LastIndex(k, ".")+1:]
				re := regexp.MustCompile(`(?m)^\s*#?\s*` + regexp.QuoteMeta(name) + `\s*=|\[\[?(\w+\.)*` + regexp.QuoteMeta(name) + `\]\]?`)
				if !re.MatchString(text.String()) {
					t.Errorf("key %q of the %s config is in no example file %s*.toml", k, c.kind, c.kind)
				}
			}
		})
	}
}
