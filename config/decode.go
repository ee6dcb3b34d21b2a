package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Kinds of config file, as Check returns them.
const (
	KindAgent      = "agent"
	KindAggregator = "aggregator"
	KindSinks      = "sinks"
)

// file is a config file that parsed as TOML.
type file struct {
	name  string
	data  map[string]any
	lines map[string]int
}

// readFile reads and parses path. A file that cannot be read is a plain
// error (errors.Is(err, fs.ErrNotExist) works); a syntax error is an
// *Errors with the line.
func readFile(path string) (*file, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, string(src))
}

func parse(name, src string) (*file, error) {
	var data map[string]any
	if _, err := toml.Decode(src, &data); err != nil {
		p := Problem{File: name, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.Line, p.Msg = pe.Position.Line, "syntax error: "+pe.Message
		}
		return nil, &Errors{Problems: []Problem{p}}
	}
	return &file{name: name, data: data, lines: keyLines(src)}, nil
}

// schema is what the three kinds of config have in common. unset tells
// setDefaults whether the field at a key was left unset.
type schema interface {
	setDefaults(unset unsetFunc)
	check(c *checker)
	// checkFiles loads the files the config names, with the methods the
	// role loads them with at start, and reports those that do not load.
	checkFiles(c *checker, now time.Time)
}

// unsetFunc reports whether the field at key (relative to the table being
// defaulted) was left unset; zero is whether it holds its zero value.
type unsetFunc func(key string, zero bool) bool

// isZero is the unsetFunc of structs built in code: zero means unset.
func isZero(_ string, zero bool) bool { return zero }

// within returns u for the keys of the table at prefix.
func within(u unsetFunc, prefix string) unsetFunc {
	return func(key string, zero bool) bool { return u(prefix+"."+key, zero) }
}

// setDefault sets *p to def when the field at key is unset.
func setDefault[T comparable](u unsetFunc, key string, p *T, def T) {
	var zero T
	if u(key, *p == zero) {
		*p = def
	}
}

// load decodes f into a new T, applies defaults to the keys the file does
// not set (or sets to a value that could not be decoded), and checks it.
func load[T any, PT interface {
	*T
	schema
}](f *file) (*T, error) {
	v := new(T)
	c := newChecker(f.name)
	c.lines, c.given = f.lines, map[string]bool{}
	d := decoder{c}
	d.table(f.data, reflect.ValueOf(v).Elem(), "")
	PT(v).setDefaults(func(key string, _ bool) bool { return !c.given[key] || c.bad[key] })
	PT(v).check(c)
	if err := c.err(); err != nil {
		return nil, err
	}
	return v, nil
}

// loadChecked is load, then, with files set, checkFiles on a config that
// loaded (the files it names, valid at now).
func loadChecked[T any, PT interface {
	*T
	schema
}](f *file, files bool, now time.Time) error {
	v, err := load[T, PT](f)
	if err != nil || !files {
		return err
	}
	c := newChecker(f.name)
	c.lines = f.lines
	PT(v).checkFiles(c, now)
	return c.err()
}

// validate checks a struct built in code.
func validate(v schema) error {
	c := newChecker("config")
	v.check(c)
	return c.err()
}

// Check reads the config file at path, tells its kind from its top-level
// keys, and loads it as that kind: an aggregator file has listen or
// data_dir, an agent file state_dir or [[input]], a sinks file [[sink]]. It
// returns the kind (KindAgent, KindAggregator or KindSinks), or "" when it
// cannot be told, and every problem in the file.
func Check(path string) (kind string, err error) { return check(path, false, time.Time{}) }

// CheckFiles is Check, then, when the file has no problem, it loads the
// files the config names as its role does when it starts: token files,
// the [tls] certificates, keys and CAs (which must be valid at now), a
// Cassandra sink's password_file. Those that cannot be read or do not load
// are problems like the others, at the key that names them:
//
//	agent.toml:4: token_file: open /etc/logship/token: no such file or directory
//	aggregator.toml:9: tls: wire: tls: certificate /etc/logship/tls/agg.pem (CN=agg) expired at 2026-01-01T00:00:00Z
func CheckFiles(path string, now time.Time) (kind string, err error) { return check(path, true, now) }

// check is Check, and CheckFiles with files set.
func check(path string, files bool, now time.Time) (kind string, err error) {
	f, err := readFile(path)
	if err != nil {
		return "", err
	}
	if kind, err = f.kind(); err != nil {
		return "", err
	}
	switch kind {
	case KindAgent:
		err = loadChecked[Agent](f, files, now)
	case KindAggregator:
		err = loadChecked[Aggregator](f, files, now)
	case KindSinks:
		err = loadChecked[Sinks](f, files, now)
	}
	return kind, err
}

func (f *file) kind() (string, error) {
	kinds, keys := f.kinds()
	switch len(kinds) {
	case 1:
		return kinds[0], nil
	case 0:
		return "", &Errors{Problems: []Problem{{File: f.name, Msg: "cannot tell the kind of config: " +
			"want an agent (state_dir, [[input]]), aggregator (listen, data_dir) or sinks ([[sink]]) file"}}}
	}
	found := make([]string, len(kinds))
	for i, k := range kinds {
		found[i] = k + " (" + keys[i] + ")"
	}
	return "", &Errors{Problems: []Problem{{File: f.name, Msg: "cannot tell the kind of config: it has the keys of " +
		strings.Join(found, " and ")}}}
}

// kinds returns the kinds of config whose top-level keys f has, each with
// those keys ("listen, data_dir").
func (f *file) kinds() (kinds, keys []string) {
	look := func(kind string, names ...string) {
		var have []string
		for _, k := range names {
			if _, ok := f.data[strings.Trim(k, "[]")]; ok {
				have = append(have, k)
			}
		}
		if len(have) > 0 {
			kinds = append(kinds, kind)
			keys = append(keys, strings.Join(have, ", "))
		}
	}
	look(KindAggregator, "listen", "data_dir")
	look(KindAgent, "state_dir", "[[input]]")
	look(KindSinks, "[[sink]]")
	return kinds, keys
}

// loadKind is load for the loader of kind want. A file with the keys of
// one other kind only is that problem alone: loaded as want, it would be a
// list of its keys as unknown and of want's as missing.
func loadKind[T any, PT interface {
	*T
	schema
}](f *file, want string) (*T, error) {
	if kinds, keys := f.kinds(); len(kinds) == 1 && kinds[0] != want {
		return nil, &Errors{Problems: []Problem{{File: f.name,
			Msg: fmt.Sprintf("looks like %s config (it has %s), not %s config", kindName(kinds[0]), keys[0], kindName(want))}}}
	}
	return load[T, PT](f)
}

// kindName is a kind with its article: "an agent".
func kindName(kind string) string {
	if kind == KindSinks {
		return "a " + kind
	}
	return "an " + kind
}

// decoder sets struct fields from the generic tree toml.Decode builds,
// reporting every value it cannot use instead of stopping at the first, as
// decoding straight into the struct would. Fields are matched by their toml
// tag; a field whose address is a toml.Unmarshaler (Size, Duration) decodes
// itself. Types other than those of this package's structs are a BUG.
type decoder struct {
	c *checker
}

func (d decoder) table(m map[string]any, rv reflect.Value, prefix string) {
	fields := map[string]reflect.Value{}
	tomlFields(rv, fields)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := joinKey(prefix, k)
		fv, ok := fields[k]
		if !ok {
			d.c.add(key, fmt.Sprintf("unknown key %q", key))
			continue
		}
		d.c.given[key] = true
		d.value(m[k], fv, key, k)
	}
}

// tomlFields maps the toml tags of rv's fields to the fields. The fields
// of an embedded struct without a tag are the table's own keys: that is
// how a [[sink]] table holds the keys of every sink type, each type's in
// its own file.
func tomlFields(rv reflect.Value, fields map[string]reflect.Value) {
	for i := range rv.NumField() {
		f := rv.Type().Field(i)
		tag := f.Tag.Get("toml")
		switch {
		case tag != "":
			fields[tag] = rv.Field(i)
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			tomlFields(rv.Field(i), fields)
		}
	}
}

// value sets fv from v; key is its path and name the key's own name.
func (d decoder) value(v any, fv reflect.Value, key, name string) {
	if u, ok := fv.Addr().Interface().(toml.Unmarshaler); ok {
		if err := u.UnmarshalTOML(v); err != nil {
			d.c.decodeErr(key, err)
		}
		return
	}
	switch fv.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.c.decodeErr(key, fmt.Errorf("want a string, got %s", describe(v)))
			return
		}
		fv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.c.decodeErr(key, fmt.Errorf("want true or false, got %s", describe(v)))
			return
		}
		fv.SetBool(b)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			fv.SetFloat(n)
		case int64:
			fv.SetFloat(float64(n))
		default:
			d.c.decodeErr(key, fmt.Errorf("want a number, got %s", describe(v)))
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.c.decodeErr(key, fmt.Errorf("want a table ([%s]), got %s", name, describe(v)))
			return
		}
		d.table(m, fv, key)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok || fv.OverflowInt(n) {
			d.c.decodeErr(key, fmt.Errorf("want an integer, got %s", describe(v)))
			return
		}
		fv.SetInt(n)
	case reflect.Map:
		// A table of strings, such as Cassandra's replication settings.
		m, ok := v.(map[string]any)
		if !ok || fv.Type().Key().Kind() != reflect.String || fv.Type().Elem().Kind() != reflect.String {
			d.c.decodeErr(key, fmt.Errorf("want a table of strings, got %s", describe(v)))
			return
		}
		out := reflect.MakeMapWithSize(fv.Type(), len(m))
		for k, e := range m {
			var es string
			switch e := e.(type) {
			case string:
				es = e
			case int64:
				es = fmt.Sprint(e)
			default:
				d.c.decodeErr(joinKey(key, k), fmt.Errorf("want a string, got %s", describe(e)))
				continue
			}
			out.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(es))
		}
		fv.Set(out)
	case reflect.Slice:
		tables := fv.Type().Elem().Kind() == reflect.Struct
		av := reflect.ValueOf(v)
		if av.Kind() != reflect.Slice {
			if tables {
				d.c.decodeErr(key, fmt.Errorf("want an array of tables ([[%s]]), got %s", name, describe(v)))
			} else {
				d.c.decodeErr(key, fmt.Errorf("want an array of strings, got %s", describe(v)))
			}
			return
		}
		s := reflect.MakeSlice(fv.Type(), av.Len(), av.Len())
		for i := range av.Len() {
			ekey := indexKey(key, i)
			d.c.given[ekey] = true
			e := av.Index(i).Interface()
			if !tables {
				d.value(e, s.Index(i), ekey, name)
				continue
			}
			m, ok := e.(map[string]any)
			if !ok {
				d.c.decodeErr(ekey, fmt.Errorf("want a table, got %s", describe(e)))
				continue
			}
			d.table(m, s.Index(i), ekey)
		}
		fv.Set(s)
	default:
		panic("BUG: config: cannot decode into " + fv.Type().String())
	}
}
