package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestKeyLines(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int // a subset of the result
	}{
		{"top", "a = 1\n\nb = 'x'\n", map[string]int{"a": 1, "b": 3}},
		{"array of tables", "[[input]]\ntopic = 'a'\n\n[[input]]\n# c\ntopic = 'b'\n",
			map[string]int{"input": 1, "input[0]": 1, "input[0].topic": 2, "input[1]": 4, "input[1].topic": 6}},
		{"sub-table of an element", "[[a]]\n[[a]]\n[a.b]\nc = 1\n[[a.d]]\ne = 2\n[[a.d]]\n",
			map[string]int{"a[1].b": 3, "a[1].b.c": 4, "a[1].d[0]": 5, "a[1].d[0].e": 6, "a[1].d[1]": 7}},
		{"table", "x = 1\n[t]\n\nk = 2\n[t.u]\nv = 3\n", map[string]int{"t": 2, "t.k": 4, "t.u": 5, "t.u.v": 6}},
		{"multi-line array", "a = [\n  'x', # one\n  \"y]\",\n\n  [1,\n2],\n]\nb = 1\n",
			map[string]int{"a": 1, "a[0]": 2, "a[1]": 3, "a[2]": 5, "a[2][1]": 6, "b": 8}},
		{"inline tables", "input = [\n {topic = 'a', paths = ['/x']},\n {topic = 'b'},\n]\nt = { a.b = 1 }\n",
			map[string]int{"input[0].topic": 2, "input[0].paths[0]": 2, "input[1].topic": 3, "t.a.b": 5}},
		{"multi-line strings", "a = \"\"\"\none \"\" \\\"\"\"\ntwo\"\"\"\"\nb = '''\n'''\nc = 1\n",
			map[string]int{"a": 1, "b": 4, "c": 6}},
		{"line-ending backslash", "a = \"\"\"x\\\n  y\"\"\"\nb = 2\n", map[string]int{"b": 3}},
		{"quoted keys", "\"a b\" = 1\n'c.d' = 2\n\"e\\u0066\" = 3\n[\"t u\".v]\nw = 4\n",
			map[string]int{`"a b"`: 1, `"c.d"`: 2, "ef": 3, `"t u".v.w`: 5}},
		{"dotted keys", "a . b = 1\n[t]\nc.d.e = 2\n", map[string]int{"a": 1, "a.b": 1, "t.c.d.e": 3}},
		{"dates", "a = 1979-05-27 07:32:00Z\nb = 1979-05-27\nc = 07:32:00\n", map[string]int{"a": 1, "b": 2, "c": 3}},
		{"comments", "# [[x]]\na = 1 # b = 2\n[t] # [u]\nc = '#' # d\n",
			map[string]int{"a": 2, "t": 3, "t.c": 4}},
		{"crlf", "a = 1\r\n[[b]]\r\nc = 2\r\n", map[string]int{"a": 1, "b[0]": 2, "b[0].c": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v map[string]any
			if _, err := toml.Decode(tt.src, &v); err != nil {
				t.Fatalf("test input is not TOML: %v", err)
			}
			got := keyLines(tt.src)
			for k, line := range tt.want {
				if got[k] != line {
					t.Errorf("%s: line %d, want %d (all: %v)", k, got[k], line, got)
				}
			}
			checkAllKeys(t, tt.src, got)
		})
	}
}

var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

// checkAllKeys checks that every key the parser found in src has a line.
// It returns false when src is not TOML.
func checkAllKeys(tb testing.TB, src string, lines map[string]int) bool {
	tb.Helper()
	var v map[string]any
	md, err := toml.Decode(src, &v)
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for k := range lines {
		have[indexRE.ReplaceAllString(k, "")] = true
	}
	for _, k := range md.Keys() {
		path := ""
		for _, p := range k {
			path = joinKey(path, p)
		}
		if !have[path] {
			tb.Errorf("key %s has no line (lines: %v)", path, lines)
		}
	}
	return true
}

// FuzzKeyLines checks that the scanner stops and finds every key of every
// document the parser accepts.
func FuzzKeyLines(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.toml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("a = [{b = \"\"\"x\"\"\"}, [1979-05-27 07:32:00, 'y']]\n[[c.d]]\n\"e.f\".g = 1\n")
	f.Fuzz(func(t *testing.T, src string) {
		lines := keyLines(src) // must not panic or hang on anything
		if strings.Count(src, "\n") > 200 {
			return
		}
		for k, l := range lines {
			if l < 1 || l > strings.Count(src, "\n")+1 {
				t.Errorf("%s: line %d out of range", k, l)
			}
		}
		if !checkAllKeys(t, src, lines) {
			return
		}
		// A key's line holds its name, when the name is written as is.
		text := strings.Split(src, "\n")
		for k, l := range lines {
			name := k[len(parentKey(k)):]
			name = strings.TrimPrefix(name, ".")
			if isBareKey(name) && l <= len(text) && !strings.Contains(text[l-1], name) {
				t.Errorf("%s: line %d is %q", k, l, text[l-1])
			}
		}
	})
}

// FuzzLoad checks that loading any input as any kind neither panics nor
// reports a line outside the file.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.toml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, src string) {
		file, err := parse("f.toml", src)
		var errs []error
		if err != nil {
			errs = append(errs, err)
		} else {
			_, err1 := load[Agent](file)
			_, err2 := load[Aggregator](file)
			_, err3 := load[Sinks](file)
			errs = append(errs, err1, err2, err3)
		}
		for _, err := range errs {
			var e *Errors
			if err == nil {
				continue
			}
			if !errors.As(err, &e) {
				t.Fatalf("got %T, want *Errors", err)
			}
			for _, p := range e.Problems {
				if p.Line < 0 || p.Line > strings.Count(src, "\n")+1 {
					t.Errorf("line out of range: %v", p)
				}
			}
		}
	})
}
