package config

import (
	"strconv"
	"strings"
)

// keyLines returns the line of every key in src, which must be a document
// the TOML parser has accepted: github.com/BurntSushi/toml records key
// positions but does not export them, so this scanner finds them again.
//
// Keys are paths as joinKey and indexKey build them. Each [[table]] header
// counts as the next element of its array, so the keys of the second
// [[input]] are "input[1].topic" and so on; "input[1]" itself maps to its
// header's line and "input" to the first header's. Elements of inline
// arrays get lines too ("aggregators[2]"), which helps with multi-line
// arrays. A key keeps the first line it is seen on.
//
// The scanner only needs to step over values correctly, not to check or
// convert them; it never fails. On input the parser would refuse it still
// terminates, with meaningless lines.
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, line: 1, lines: map[string]int{}, arrays: map[string]int{}}
	for s.pos < len(s.src) {
		start := s.pos
		s.skip(true)
		if s.pos >= len(s.src) {
			break
		}
		if s.src[s.pos] == '[' {
			s.header()
		} else {
			s.keyValue(s.table)
		}
		if s.pos == start {
			s.next() // unexpected byte: step over it
		}
	}
	return s.lines
}

type lineScanner struct {
	src    string
	pos    int
	line   int
	lines  map[string]int
	arrays map[string]int // path of an array of tables -> elements so far
	table  string         // path of the current table; "" at the top
}

func (s *lineScanner) peek(off int) byte {
	if s.pos+off < len(s.src) {
		return s.src[s.pos+off]
	}
	return 0
}

// next steps over one byte, if any, counting lines.
func (s *lineScanner) next() {
	if s.pos >= len(s.src) {
		return
	}
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *lineScanner) set(key string) {
	if _, ok := s.lines[key]; !ok {
		s.lines[key] = s.line
	}
}

// skip steps over blanks and comments, and over newlines if newlines.
func (s *lineScanner) skip(newlines bool) {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			if !newlines {
				return
			}
			s.next()
		case '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and makes it the current table.
func (s *lineScanner) header() {
	s.pos++
	array := s.peek(0) == '['
	if array {
		s.pos++
	}
	parts := s.key()
	s.skip(false)
	for s.peek(0) == ']' {
		s.pos++
	}
	path := ""
	for i, p := range parts {
		path = joinKey(path, p)
		if array && i == len(parts)-1 {
			s.set(path)
			n := s.arrays[path]
			s.arrays[path] = n + 1
			path = indexKey(path, n)
		} else if n, ok := s.arrays[path]; ok {
			path = indexKey(path, n-1) // a sub-table of the latest element
		}
		s.set(path)
	}
	s.table = path
}

// keyValue reads "key = value" in the table at prefix.
func (s *lineScanner) keyValue(prefix string) {
	path := prefix
	for _, p := range s.key() {
		path = joinKey(path, p)
		s.set(path)
	}
	s.skip(false)
	if s.peek(0) != '=' {
		return
	}
	s.pos++
	s.skip(false)
	s.value(path)
}

// key reads a dotted key and returns its parts, unquoted.
func (s *lineScanner) key() []string {
	var parts []string
	for {
		s.skip(false)
		start := s.pos
		switch s.peek(0) {
		case '"':
			s.str()
			raw := s.src[start:s.pos]
			u, err := strconv.Unquote(raw) // Go's escapes cover TOML's
			if err != nil {
				u = strings.Trim(raw, `"`)
			}
			parts = append(parts, u)
		case '\'':
			s.str()
			parts = append(parts, strings.TrimSuffix(s.src[start+1:s.pos], "'"))
		default:
			for s.pos < len(s.src) && !strings.ContainsRune(" \t\r\n=.[]#\"',{}", rune(s.src[s.pos])) {
				s.pos++
			}
			if s.pos == start {
				return parts
			}
			parts = append(parts, s.src[start:s.pos])
		}
		s.skip(false)
		if s.peek(0) != '.' {
			return parts
		}
		s.pos++
	}
}

// value steps over one value, recording the keys of inline tables and the
// elements of arrays under path.
func (s *lineScanner) value(path string) {
	switch s.peek(0) {
	case '"', '\'':
		s.str()
	case '[':
		s.pos++
		for i := 0; s.pos < len(s.src); {
			s.skip(true)
			switch s.peek(0) {
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
			default:
				start := s.pos
				elem := indexKey(path, i)
				s.set(elem)
				s.value(elem)
				i++
				if s.pos == start {
					s.next()
				}
			}
		}
	case '{':
		s.pos++
		for s.pos < len(s.src) {
			s.skip(true)
			switch s.peek(0) {
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
			default:
				start := s.pos
				s.keyValue(path)
				if s.pos == start {
					s.next()
				}
			}
		}
	default:
		s.scalar()
	}
}

// scalar steps over a number, boolean or date-time. A date-time may have a
// space between date and time: "1979-05-27 07:32:00Z".
func (s *lineScanner) scalar() {
	start := s.pos
	for s.pos < len(s.src) && !strings.ContainsRune(" \t\r\n,]}#", rune(s.src[s.pos])) {
		s.pos++
		if s.pos-start == 10 && s.peek(0) == ' ' && isDigit(s.peek(1)) && isDate(s.src[start:s.pos]) {
			s.pos++
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isDate reports whether d looks like "1979-05-27".
func isDate(d string) bool {
	for i := 0; i < len(d); i++ {
		if (i == 4 || i == 7) != (d[i] == '-') || d[i] != '-' && !isDigit(d[i]) {
			return false
		}
	}
	return len(d) == 10
}

// str steps over a basic or literal string, single-line or multi-line.
func (s *lineScanner) str() {
	q := s.src[s.pos]
	escapes := q == '"'
	if s.peek(1) == q && s.peek(2) == q {
		s.pos += 3
		for s.pos < len(s.src) {
			switch {
			case escapes && s.src[s.pos] == '\\' && s.pos+1 < len(s.src):
				s.pos++
				s.next()
			case s.src[s.pos] == q && s.peek(1) == q && s.peek(2) == q:
				s.pos += 3
				// Up to two more quotes belong to the content: """a""""".
				for i := 0; i < 2 && s.peek(0) == q; i++ {
					s.pos++
				}
				return
			default:
				s.next()
			}
		}
		return
	}
	s.pos++
	for s.pos < len(s.src) && s.src[s.pos] != '\n' {
		c := s.src[s.pos]
		s.pos++
		if escapes && c == '\\' && s.pos < len(s.src) && s.src[s.pos] != '\n' {
			s.pos++
		} else if c == q {
			return
		}
	}
}
