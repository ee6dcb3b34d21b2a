package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"logship/logstore/batch"
)

// The checks that several keys share. Each reports through the checker in
// the user's terms and says what would be accepted.

// required reports a missing or empty string and returns whether s is set.
func (c *checker) required(key, s string) bool {
	if s != "" {
		return true
	}
	if c.given[key] || strings.HasSuffix(key, "]") {
		c.errorf(key, "must not be empty")
	} else {
		c.add(key, fmt.Sprintf("missing required key %q", key))
	}
	return false
}

// nonEmpty reports a missing or empty list of n elements and returns
// whether it has any. what names an element: "host:port", "path".
func (c *checker) nonEmpty(key string, n int, what string) bool {
	if n > 0 {
		return true
	}
	if c.given[key] {
		c.errorf(key, "want at least one %s", what)
	} else {
		c.add(key, fmt.Sprintf("missing required key %q", key))
	}
	return false
}

// tables reports a missing array of tables and returns whether it has any.
func (c *checker) tables(key string, n int) bool {
	if n > 0 {
		return true
	}
	if c.given[key] {
		c.errorf(key, "want at least one [[%s]]", key)
	} else {
		c.add(key, fmt.Sprintf("missing [[%s]]: want at least one", key))
	}
	return false
}

// name checks a required topic name, id or sink name (batch.ValidName).
func (c *checker) name(key, what, s string) {
	if !c.required(key, s) {
		return
	}
	if err := batch.CheckName(what, s); err != nil {
		c.errorf(key, "%v", err)
	}
}

// oneOf checks an enumerated value.
func (c *checker) oneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	want := q[0]
	if n := len(q); n > 1 {
		want = strings.Join(q[:n-1], ", ") + " or " + q[n-1]
	}
	c.errorf(key, "invalid value %q: want %s", s, want)
}

// sizeRange checks lo <= v <= hi; hi == 0 means no upper bound.
func (c *checker) sizeRange(key string, v, lo, hi Size) {
	switch {
	case hi == 0 && v < lo:
		c.errorf(key, "%v is too small: want at least %v", v, lo)
	case hi != 0 && (v < lo || v > hi):
		c.errorf(key, "%v is out of range: want %v to %v", v, lo, hi)
	}
}

// positive checks that a duration or size is above zero.
func positive[T Duration | Size](c *checker, key string, v T) {
	if v <= 0 {
		c.errorf(key, "must be positive, got %v", v)
	}
}

// address checks host:port. An address to dial needs a host and a port
// from 1 to 65535; one to listen on may leave the host empty (all
// interfaces) and use port 0 (any free port, for tests).
func (c *checker) address(key, s string, dial bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		c.errorf(key, "invalid address %q: want host:port", s)
		return
	}
	if dial && host == "" {
		c.errorf(key, "invalid address %q: want host:port with a host", s)
		return
	}
	lo := 0
	if dial {
		lo = 1
	}
	if n, err := strconv.Atoi(port); err != nil || n < lo || n > 65535 {
		c.errorf(key, "invalid address %q: port must be a number from %d to 65535", s, lo)
	}
}

// addresses checks a required list of addresses to dial, without repeats.
func (c *checker) addresses(key string, list []string) {
	if !c.nonEmpty(key, len(list), "host:port") {
		return
	}
	seen := map[string]int{}
	for i, a := range list {
		k := indexKey(key, i)
		if j, ok := seen[a]; ok {
			c.errorf(k, "%q repeats %s", a, indexKey(key, j))
			continue
		}
		seen[a] = i
		if c.required(k, a) {
			c.address(k, a, true)
		}
	}
}

// absDir checks a required directory, which must be an absolute path as
// input paths are: a relative one would name a different directory
// depending on where the process was started.
func (c *checker) absDir(key, s string) {
	if c.required(key, s) && !filepath.IsAbs(s) {
		c.errorf(key, "%q is not an absolute path", s)
	}
}

// globs checks absolute filepath.Match patterns.
func (c *checker) globs(key string, list []string) {
	for i, g := range list {
		k := indexKey(key, i)
		if !c.required(k, g) {
			continue
		}
		if !filepath.IsAbs(g) {
			c.errorf(k, "%q is not an absolute path", g)
			continue
		}
		if _, err := filepath.Match(g, ""); err != nil {
			c.errorf(k, "invalid glob %q: %v", g, err)
		}
	}
}

// hostID returns os.Hostname as a valid name: characters outside
// [A-Za-z0-9._-] become '-', and it is cut to leave room for suffix
// (appended as is) within batch.MaxNameLen. It is "" when the host name
// is unknown, which the id check then reports.
func hostID(suffix string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return ""
	}
	b := []rune(h)
	for i, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			b[i] = '-'
		}
	}
	s := string(b)
	if n := batch.MaxNameLen - len(suffix); len(s) > n {
		s = s[:n]
	}
	return s + suffix
}
