package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestMatchPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"/var/log/*.log", "/var/log/a.log", true},
		{"/var/log/*.log", "/var/log/x/a.log", false},
		{"/var/log/**/*.log", "/var/log/a.log", true},
		{"/var/log/**/*.log", "/var/log/x/y/a.log", true},
		{"/var/log/**/*.log", "/var/log/x/y/a.txt", false},
		{"/var/log/**", "/var/log/x/y/a.txt", true},
		{"/var/**/app/*.log", "/var/log/app/a.log", true},
		{"/var/**/app/*.log", "/var/app/a.log", true},
		{"/var/**/app/*.log", "/var/log/app2/a.log", false},
		{"**/*.log", "x/a.log", true},
		{"a/b", "a/b/c", false},
	} {
		if got := matchPath(tc.pattern, tc.path); got != tc.want {
			t.Errorf("matchPath(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestExpandAndExclude(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a.log", "x/b.log", "x/y/c.log", "x/y/c.txt", "x/skip.log", "z/d.log"} {
		p = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x\n"), 0o644)
	}
	rel := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			if !excluded([]string{"skip.*", filepath.Join(dir, "z", "*")}, p) {
				r, _ := filepath.Rel(dir, p)
				out = append(out, r)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := rel(expand(filepath.Join(dir, "**", "*.log"))), []string{"a.log", "x/b.log", "x/y/c.log"}; !slices.Equal(got, want) {
		t.Errorf("** expand = %q, want %q", got, want)
	}
	if got, want := rel(expand(filepath.Join(dir, "x", "*.log"))), []string{"x/b.log"}; !slices.Equal(got, want) {
		t.Errorf("expand = %q, want %q", got, want)
	}
	if got := expand(filepath.Join(dir, "missing", "**", "*.log")); len(got) != 0 {
		t.Errorf("missing dir: %q", got)
	}
}

func TestRestoredSetClaim(t *testing.T) {
	fp := func(k int) (uint64, error) { return uint64(k) * 7, nil } // the file's fingerprints
	entries := []posEntry{
		{ID: 1, Dev: 1, Inode: 10, FP: 1024 * 7, FPLen: 1024, Pos: 5}, // same content, other file (a copy)
		{ID: 2, Dev: 1, Inode: 20, FP: 1024 * 7, FPLen: 1024, Pos: 6}, // same content, same file
		{ID: 3, Dev: 1, Inode: 30, FP: 99, FPLen: 1024, Pos: 7},       // other content
		{ID: 4, Dev: 1, Inode: 40, FP: 50 * 7, FPLen: 50, Pos: 8},     // short fingerprint
		{Dev: 1, Inode: 50, FPLen: 0, Salt: 3},                        // truncated to nothing
		{ID: 6, Dev: 1, Inode: 60, FP: 4000 * 7, FPLen: 1024, Pos: 9}, // longer than the file
	}
	r := newRestoredSet(entries)
	if e := r.claim(fileKey{1, 77}, 5000, true, fp); e != nil {
		t.Errorf("exact claim by another inode took %d", e.ID)
	}
	claim := func(ino uint64, size int64) hex64 {
		if e := r.claim(fileKey{1, ino}, size, false, fp); e != nil {
			return e.ID + e.Salt*100
		}
		return 0
	}
	if got := claim(20, 5000); got != 2 {
		t.Errorf("same (dev, inode) and fingerprint: claimed %d, want 2", got)
	}
	if got := claim(77, 5000); got != 1 {
		t.Errorf("copy: claimed %d, want 1", got)
	}
	if got := claim(78, 5000); got != 4 {
		t.Errorf("short fingerprint: claimed %d, want 4", got)
	}
	if got := claim(79, 5000); got != 0 {
		t.Errorf("no match: claimed %d", got)
	}
	if got := claim(50, 10); got != 300 {
		t.Errorf("empty entry: claimed %d, want its salt", got)
	}
	if got := claim(60, 10); got != 0 {
		t.Errorf("file shorter than the fingerprint: claimed %d", got)
	}
	if rest := r.rest(); len(rest) != 2 {
		t.Errorf("%d left, want 2", len(rest))
	}
}

func TestDecodePositionsRejectsBadValues(t *testing.T) {
	for name, body := range map[string]string{
		"not json":     `{"sources": [`,
		"negative pos": `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":-1}]}`,
		"long fp":      `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":2000,"pos":1}]}`,
		"bad hex":      `{"sources":[{"id":"xyz","fingerprint":"02","fingerprint_len":10,"pos":1}]}`,
		"empty fp pos": `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":0,"pos":5}]}`,
	} {
		if _, err := decodePositions(1, []byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := decodePositions(2, []byte(`{"sources":[]}`)); err == nil {
		t.Error("version 2: no error")
	}
	es, err := decodePositions(1, []byte(`{"agent":"a","sources":[{"id":"00000000000000ff","fingerprint":"02","fingerprint_len":10,"pos":1}]}`))
	if err != nil || len(es) != 1 || es[0].ID != 0xff {
		t.Errorf("good body: %+v, %v", es, err)
	}
}

func TestBackoff(t *testing.T) {
	for fails, lim := range map[int][2]time.Duration{
		0: {backoffMin / 2, backoffMin}, 1: {backoffMin / 2, backoffMin}, 2: {backoffMin, 2 * backoffMin},
		10: {backoffMax / 2, backoffMax}, 100: {backoffMax / 2, backoffMax},
	} {
		for range 100 {
			if d := backoff(fails); d < lim[0] || d > lim[1] {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", fails, d, lim[0], lim[1])
			}
		}
	}
}

// TestIdleAgentDoesNotSpin measures how often the loop wakes when there is
// nothing to do. The sleep is the measurement window, not a synchronisation.
func TestIdleAgentDoesNotSpin(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(10)
	w.writeRaw("incomplete")
	ag := startAgent(t, opts)
	waitFor(t, "lines", func() bool { return fa.records() == 10 })
	waitFor(t, "idle", ag.Idle)
	start := ag.loopIters.Load()
	const window = 300 * time.Millisecond
	time.Sleep(window)
	// Wakes: polls every 5ms, scans and positions ticks every 20ms.
	n, max := ag.loopIters.Load()-start, int64(3*window/opts.PollInterval)
	t.Logf("%d loop iterations in %v", n, window)
	if n > max {
		t.Errorf("%d loop iterations in %v while idle, want at most %d", n, window, max)
	}
}

// Source ids are deterministic for one physical file and differ between
// files that had the same (dev, inode) and the same first bytes one after
// the other: their birth times differ.
func TestSourceIDDistinguishesBirthTime(t *testing.T) {
	key := fileKey{dev: 1, ino: 2}
	id := sourceID(7, 13, key, birth{sec: 100, nsec: 5}, 0)
	if id != sourceID(7, 13, key, birth{sec: 100, nsec: 5}, 0) {
		t.Error("not deterministic")
	}
	for name, other := range map[string]uint64{
		"birth seconds": sourceID(7, 13, key, birth{sec: 101, nsec: 5}, 0),
		"birth nanos":   sourceID(7, 13, key, birth{sec: 100, nsec: 6}, 0),
		"salt":          sourceID(7, 13, key, birth{sec: 100, nsec: 5}, 1),
		"inode":         sourceID(7, 13, fileKey{dev: 1, ino: 3}, birth{sec: 100, nsec: 5}, 0),
		"fingerprint":   sourceID(8, 13, key, birth{sec: 100, nsec: 5}, 0),
		"length":        sourceID(7, 14, key, birth{sec: 100, nsec: 5}, 0),
	} {
		if other == id {
			t.Errorf("another %s gives the same id", name)
		}
	}

	// The birth time of a file is the same through every descriptor.
	path := filepath.Join(t.TempDir(), "a.log")
	if err := os.WriteFile(path, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bt := func() (birth, bool) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return birthTime(f)
	}
	b1, ok := bt()
	if !ok {
		t.Skip("no birth time on this platform or file system")
	}
	if b2, _ := bt(); b1 != b2 || b1 == (birth{}) {
		t.Errorf("birth time %+v, then %+v", b1, b2)
	}
}
