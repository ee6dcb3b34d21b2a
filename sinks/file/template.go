package file

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fields of a path template (doc.go). The time fields are those of the
// file's first record, in UTC.
const (
	fieldNone = iota
	fieldTopic
	fieldAggregator
	fieldPartition
	fieldYear  // {yyyy}
	fieldMonth // {mm}
	fieldDay   // {dd}
	fieldHour  // {hh}
)

var fieldNames = map[string]int{
	"topic": fieldTopic, "aggregator": fieldAggregator, "partition": fieldPartition,
	"yyyy": fieldYear, "mm": fieldMonth, "dd": fieldDay, "hh": fieldHour,
}

// digits is the width of each time field.
var digits = [...]int{fieldYear: 4, fieldMonth: 2, fieldDay: 2, fieldHour: 2}

// part is a literal or a field of a template segment.
type part struct {
	lit   string
	field int // fieldNone for a literal
}

// Template is a parsed path template: the directory, relative to the
// sink's root, that a file is published in, e.g. "{topic}/{yyyy}/{mm}".
// The zero Template is the root itself.
type Template struct {
	raw  string
	segs [][]part
	time bool // some segment has a time field
}

// ParseTemplate parses a relative path template. Segments are separated by
// '/'; each is literal text and {field}s, field one of topic, aggregator,
// partition, yyyy, mm, dd, hh. "" is the root directory.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	if s == "" {
		return t, nil
	}
	bad := func(format string, a ...any) (Template, error) {
		return Template{}, fmt.Errorf("file: path template %q: %s", s, fmt.Sprintf(format, a...))
	}
	if strings.HasPrefix(s, "/") {
		return bad("must be relative to the sink's directory")
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("empty, \".\" or \"..\" path element")
		}
		var parts []part
		rest := seg
		for rest != "" {
			i := strings.IndexAny(rest, "{}")
			if i < 0 {
				parts = append(parts, part{lit: rest})
				break
			}
			if rest[i] == '}' {
				return bad("unmatched '}'")
			}
			if i > 0 {
				parts = append(parts, part{lit: rest[:i]})
			}
			j := strings.IndexByte(rest[i:], '}')
			if j < 0 {
				return bad("unmatched '{'")
			}
			name := rest[i+1 : i+j]
			f, ok := fieldNames[name]
			if !ok {
				return bad("unknown field {%s}: want {topic}, {aggregator}, {partition}, {yyyy}, {mm}, {dd} or {hh}", name)
			}
			if f >= fieldYear {
				t.time = true
			}
			parts = append(parts, part{field: f})
			rest = rest[i+j+1:]
		}
		t.segs = append(t.segs, parts)
	}
	return t, nil
}

// MustParseTemplate is ParseTemplate for constants; it panics on error.
func MustParseTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return t
}

// String returns the template as it was parsed.
func (t Template) String() string { return t.raw }

// HasTime reports whether the template has a time field: then a
// partition's files spread over many directories.
func (t Template) HasTime() bool { return t.time }

// Render returns the relative directory of a file of the partition whose
// first record has time at (converted to UTC).
func (t Template) Render(topic, agg string, partition int, at time.Time) string {
	at = at.UTC()
	var b strings.Builder
	for i, seg := range t.segs {
		if i > 0 {
			b.WriteByte('/')
		}
		for _, p := range seg {
			b.WriteString(p.render(topic, agg, partition, at))
		}
	}
	return b.String()
}

func (p part) render(topic, agg string, partition int, at time.Time) string {
	switch p.field {
	case fieldTopic:
		return topic
	case fieldAggregator:
		return agg
	case fieldPartition:
		return strconv.Itoa(partition)
	case fieldYear:
		return fmt.Sprintf("%04d", at.Year())
	case fieldMonth:
		return fmt.Sprintf("%02d", int(at.Month()))
	case fieldDay:
		return fmt.Sprintf("%02d", at.Day())
	case fieldHour:
		return fmt.Sprintf("%02d", at.Hour())
	}
	return p.lit
}

// matchSegment reports whether name is what segment i renders to for the
// partition at some time.
func (t Template) matchSegment(i int, name, topic, agg string, partition int) bool {
	rest := name
	for _, p := range t.segs[i] {
		if p.field < fieldYear {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, p.render(topic, agg, partition, time.Time{})); !ok {
				return false
			}
			continue
		}
		n := digits[p.field]
		if len(rest) < n {
			return false
		}
		for _, c := range []byte(rest[:n]) {
			if c < '0' || c > '9' {
				return false
			}
		}
		rest = rest[n:]
	}
	return rest == ""
}

// errReserved is returned by checkReserved.
var errReserved = errors.New("is a directory the sink keeps for itself")

// checkReserved refuses a partition whose files would go into the sink's
// own directories (a topic called "_tmp" under the template "{topic}").
func (t Template) checkReserved(topic, agg string, partition int) error {
	if len(t.segs) == 0 {
		return nil
	}
	// Time fields render to digits: they never make a reserved name.
	first := ""
	for _, p := range t.segs[0] {
		first += p.render(topic, agg, partition, time.Time{})
	}
	if first == TmpDir || first == StateDir {
		return fmt.Errorf("%q %w: not supported by this sink", first, errReserved)
	}
	return nil
}
