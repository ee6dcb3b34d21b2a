package batch

import "fmt"

// MaxNameLen bounds topic names and ids.
const MaxNameLen = 128

// ValidName reports whether s is a valid topic name, agent id, aggregator id
// or sink name: [A-Za-z0-9._-]{1,128}, and not "." or "..". Such a name is
// safe as a path element and in HDFS and Cassandra identifiers' values.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// CheckName returns an error naming what (for example "topic") when s is
// not a ValidName.
func CheckName(what, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("invalid %s %q: want 1 to %d characters of [A-Za-z0-9._-]", what, s, MaxNameLen)
	}
	return nil
}
