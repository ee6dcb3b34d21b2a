package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Problem is one thing wrong with a config: where it is and what it is.
type Problem struct {
	File string // the path given to Load*, or "config" for a struct built in code
	Line int    // 1-based; 0 when the problem has no line (a missing top-level key)
	Msg  string // names the key as the user wrote it: `input[1].topic: invalid topic "a/b": …`
}

// String formats p as "file:line: msg", or "file: msg" when p has no line.
func (p Problem) String() string {
	if p.Line == 0 {
		return p.File + ": " + p.Msg
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ": " + p.Msg
}

// Error makes a Problem an error, so errors.As can find one in an *Errors.
func (p Problem) Error() string { return p.String() }

// Errors is every problem found in a config, ordered by line. Load*, Check
// and Validate return it (as an error) when there is at least one.
type Errors struct {
	Problems []Problem
}

// Error returns the problems, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, each as an error.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// checker collects the problems of one config. Keys are paths in the
// user's terms: "batch_bytes", "input[1].topic", "aggregators[0]" (indexes
// count from 0); see joinKey and indexKey.
type checker struct {
	file  string
	lines map[string]int  // key -> line; nil for a struct built in code
	given map[string]bool // keys present in the file; nil for a struct built in code
	bad   map[string]bool // keys whose value could not be decoded
	probs []Problem
}

func newChecker(file string) *checker {
	return &checker{file: file, bad: map[string]bool{}}
}

// add records msg as a problem of key, located at key's line, or at the
// line of the nearest enclosing key or table that has one. Problems under a
// key that failed to decode are dropped: they would only repeat that one.
func (c *checker) add(key, msg string) {
	for k := key; k != ""; k = parentKey(k) {
		if c.bad[k] {
			return
		}
	}
	line := 0
	for k := key; k != "" && c.lines != nil; k = parentKey(k) {
		if l, ok := c.lines[k]; ok {
			line = l
			break
		}
	}
	c.probs = append(c.probs, Problem{File: c.file, Line: line, Msg: msg})
}

// errorf records "key: message".
func (c *checker) errorf(key, format string, args ...any) {
	c.add(key, key+": "+fmt.Sprintf(format, args...))
}

// loaded records err, from loading what the table at key names (a file),
// at the key err names within that table when it is a *KeyError.
func (c *checker) loaded(key string, err error) {
	if err == nil {
		return
	}
	var ke *KeyError
	if errors.As(err, &ke) {
		if ke.Key != "" {
			key = joinKey(key, ke.Key)
		}
		err = ke.Err
	}
	if key == "" {
		c.add(key, err.Error())
		return
	}
	c.errorf(key, "%v", err)
}

// decodeErr records a value that could not be decoded and marks key bad.
func (c *checker) decodeErr(key string, err error) {
	c.errorf(key, "%v", err)
	c.bad[key] = true
}

// err returns the problems as an *Errors, sorted by line, or nil.
func (c *checker) err() error {
	if len(c.probs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.probs, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return &Errors{Problems: c.probs}
}

// joinKey returns the path of key k in the table at prefix. k is quoted
// when it is not a bare TOML key, so paths stay unambiguous.
func joinKey(prefix, k string) string {
	if !isBareKey(k) {
		k = strconv.Quote(k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// indexKey returns the path of element i of the array at key.
func indexKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

// parentKey strips the last ".name" or "[i]" from key; "" for a top-level key.
func parentKey(key string) string {
	cut, quoted := 0, false
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '.' || c == '['):
			cut = i
		}
	}
	return key[:cut]
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// describe names the TOML type of a decoded value, with the value when it
// is short: `string "x"`, `integer 5`, `table`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case time.Time:
		return "datetime"
	case map[string]any:
		return "table"
	case []any, []map[string]any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}
