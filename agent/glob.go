package agent

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Globs are filepath.Match patterns, one per path element, plus "**": a
// whole element "**" matches zero or more directories. Patterns without
// "**" are expanded with filepath.Glob; those with it walk the directory
// tree below the pattern's literal prefix (symbolic links to directories
// are not followed).

// checkPattern reports a malformed pattern.
func checkPattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty path pattern")
	}
	for _, el := range strings.Split(p, string(filepath.Separator)) {
		if el == "**" {
			continue
		}
		if _, err := filepath.Match(el, ""); err != nil {
			return fmt.Errorf("bad path pattern %q: %w", p, err)
		}
	}
	return nil
}

// expand returns the paths matching pattern. File system errors are
// ignored (a directory that does not exist yet matches nothing).
func expand(pattern string) []string {
	if !hasDoubleStar(pattern) {
		m, _ := filepath.Glob(pattern)
		return m
	}
	root := literalPrefix(pattern)
	pat := splitPath(pattern)
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if matchElems(pat, splitPath(p)) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// excluded reports whether path matches one of the exclude patterns.
func excluded(patterns []string, path string) bool {
	for _, p := range patterns {
		var ok bool
		if strings.ContainsRune(p, filepath.Separator) {
			ok = matchPath(p, path)
		} else {
			ok, _ = filepath.Match(p, filepath.Base(path))
		}
		if ok {
			return true
		}
	}
	return false
}

// matchPath matches a whole path against a pattern that may hold "**".
func matchPath(pattern, path string) bool {
	return matchElems(splitPath(pattern), splitPath(path))
}

func hasDoubleStar(p string) bool {
	for _, el := range strings.Split(p, string(filepath.Separator)) {
		if el == "**" {
			return true
		}
	}
	return false
}

// literalPrefix is the directory made of the pattern's leading elements
// that hold no meta characters: where a walk has to start.
func literalPrefix(pattern string) string {
	els := strings.Split(pattern, string(filepath.Separator))
	i := 0
	for i < len(els) && !strings.ContainsAny(els[i], `*?[\`) {
		i++
	}
	root := strings.Join(els[:i], string(filepath.Separator))
	if root == "" {
		if strings.HasPrefix(pattern, string(filepath.Separator)) {
			return string(filepath.Separator)
		}
		return "."
	}
	return root
}

func splitPath(p string) []string {
	p = filepath.Clean(p)
	if p == "." {
		return nil
	}
	return strings.Split(p, string(filepath.Separator))
}

func matchElems(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			pat = pat[1:]
			for i := 0; i <= len(name); i++ {
				if matchElems(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
