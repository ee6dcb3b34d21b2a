package agent

import (
	"bytes"
	"fmt"
	"hash/crc64"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/logstore/batch"
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

// content returns n bytes of numbered lines of the stream, the same for
// the same arguments.
func content(stream string, n int) []byte {
	var b []byte
	for i := 1; len(b) < n; i++ {
		b = append(b, lineFor(stream, i)...)
		b = append(b, '\n')
	}
	return b[:n]
}

// entryFor is the version 2 positions entry of a file holding data, at pos.
func entryFor(data []byte, key fileKey, pos int64, id hex64) posEntry {
	k := min(len(data), fingerprintMax)
	n := tailLen(pos)
	return posEntry{
		ID: id, Dev: key.dev, Inode: key.ino,
		FP: hex64(crc64.Checksum(data[:k], crcTable)), FPLen: k, Pos: pos,
		TailFP: hex64(crc64.Checksum(data[pos-int64(n):pos], crcTable)), TailLen: n, hasTail: true,
	}
}

func v1(e posEntry) posEntry {
	e.TailFP, e.TailLen, e.hasTail = 0, 0, false
	return e
}

func TestRestoredSetClaim(t *testing.T) {
	own, other := fileKey{1, 10}, fileKey{1, 77}
	old := content("old", 5000)
	// A new file that begins like the old one (a shared 1 KiB header) and
	// then differs.
	regrown := append(append([]byte(nil), old[:1500]...), content("new", 3500)...)
	probe := func(data []byte) *probe {
		return newProbe(bytes.NewReader(data), int64(len(data)), make([]byte, fingerprintMax))
	}
	type want struct {
		resume hex64 // id + 100*salt of the entry resumed, 0 for none
		lost   hex64 // id of the entry lost (own pass only)
	}
	for _, tc := range []struct {
		name    string
		entries []posEntry
		key     fileKey
		file    []byte
		own     want // claimOwn
		copy    hex64
	}{
		{"same file, grown", []posEntry{entryFor(old, own, 3000, 1)}, own, old, want{resume: 1}, 0},
		{"same file, at its position", []posEntry{entryFor(old, own, 3000, 1)}, own, old[:3000], want{resume: 1}, 0},
		{"same file, position 0", []posEntry{entryFor(old, own, 0, 1)}, own, old, want{resume: 1}, 0},
		{"truncated while stopped", []posEntry{entryFor(old, own, 3000, 1)}, own, old[:2000], want{lost: 1}, 0},
		{"truncated and regrown with the same header", []posEntry{entryFor(old, own, 3000, 1)}, own, regrown, want{lost: 1}, 0},
		{"emptied", []posEntry{entryFor(old, own, 3000, 1)}, own, nil, want{lost: 1}, 0},
		{"first bytes differ", []posEntry{entryFor(old, own, 3000, 1)}, own, content("new", 5000), want{lost: 1}, 0},
		{"version 1 entry, own inode: trusted", []posEntry{v1(entryFor(old, own, 3000, 1))}, own, regrown, want{resume: 1}, 0},
		{"version 1 entry, own inode, shorter", []posEntry{v1(entryFor(old, own, 3000, 1))}, own, old[:2000], want{lost: 1}, 0},
		{"no fingerprint yet: keeps its salt", []posEntry{{Dev: 1, Inode: 10, Salt: 3}}, own, old, want{resume: 300}, 0},
		{"copy", []posEntry{entryFor(old, own, 3000, 1)}, other, old[:4000], want{}, 1},
		{"copy shorter than the position", []posEntry{entryFor(old, own, 3000, 1)}, other, old[:2999], want{}, 0},
		{"new file with the same header", []posEntry{entryFor(old, own, 3000, 1)}, other, regrown, want{}, 0},
		{"version 1 entry, other inode: not by fingerprint alone", []posEntry{v1(entryFor(old, own, 3000, 1))}, other, old, want{}, 0},
		{"empty file", []posEntry{entryFor(old, own, 0, 1)}, other, nil, want{}, 0},
		{"same inode on another device wins", []posEntry{entryFor(old, own, 3000, 1), entryFor(old, fileKey{2, 77}, 3000, 2)}, other, old, want{}, 2},
		{"longest fingerprint wins", []posEntry{entryFor(old[:100], own, 100, 1), entryFor(old, fileKey{1, 11}, 100, 2)}, other, old, want{}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRestoredSet(append([]posEntry(nil), tc.entries...))
			p := probe(tc.file)
			e, lost := r.claimOwn(tc.key, p)
			var got want
			if e != nil {
				got.resume = e.ID + e.Salt*100
			}
			if lost != nil {
				got.lost = lost.ID
			}
			if got != tc.own {
				t.Errorf("claimOwn: %+v, want %+v", got, tc.own)
			}
			if e != nil || lost != nil {
				return
			}
			var c hex64
			if e := r.claimCopy(tc.key, p, noOwnFile); e != nil {
				c = e.ID
			}
			if c != tc.copy {
				t.Errorf("claimCopy: %d, want %d", c, tc.copy)
			}
		})
	}

	// A lost entry stays for a copy (copytruncate while the agent was
	// stopped: the copy resumes, the truncated file is a new source), and
	// is not reported as a file that is gone.
	r := newRestoredSet([]posEntry{entryFor(old, own, 3000, 1), entryFor(content("gone", 2000), fileKey{1, 12}, 2000, 2)})
	if e, lost := r.claimOwn(own, probe(regrown)); e != nil || lost == nil || lost.ID != 1 {
		t.Fatalf("truncated file: resume %v, lost %v", e, lost)
	}
	if e := r.claimCopy(other, probe(old), noOwnFile); e == nil || e.ID != 1 {
		t.Fatalf("copy: %v", e)
	}
	r = newRestoredSet([]posEntry{entryFor(old, own, 3000, 1), entryFor(content("gone", 2000), fileKey{1, 12}, 2000, 2)})
	r.claimOwn(own, probe(regrown))
	if rest, lost := r.rest(); len(rest) != 1 || rest[0].ID != 2 || len(lost) != 1 || lost[0].ID != 1 {
		t.Errorf("rest: %v and lost %v, want the entry of the file that is gone, and apart the truncated one's", rest, lost)
	}
}

func TestDecodePositionsRejectsBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		v    int
		body string
	}{
		"not json":        {2, `{"sources": [`},
		"negative pos":    {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":-1}]}`},
		"long fp":         {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":2000,"pos":1,"tail_len":1}]}`},
		"bad hex":         {2, `{"sources":[{"id":"xyz","fingerprint":"02","fingerprint_len":10,"pos":1,"tail_len":1}]}`},
		"empty fp pos":    {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":0,"pos":5,"tail_len":5}]}`},
		"no tail":         {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":5}]}`},
		"short tail":      {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":5000,"tail_len":1000}]}`},
		"bad tail hex":    {2, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":5,"tail_len":5,"tail_fingerprint":"x"}]}`},
		"v1 negative pos": {1, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":10,"pos":-1}]}`},
		"v1 empty fp pos": {1, `{"sources":[{"id":"01","fingerprint":"02","fingerprint_len":0,"pos":5}]}`},
		"version 3":       {3, `{"sources":[]}`},
		"version 0":       {0, `{"sources":[]}`},
	} {
		if _, err := decodePositions(tc.v, []byte(tc.body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	pb, err := decodePositions(1, []byte(`{"agent":"a","sources":[{"id":"00000000000000ff","fingerprint":"02","fingerprint_len":10,"pos":1}]}`))
	if es := pb.Sources; err != nil || len(es) != 1 || es[0].ID != 0xff || es[0].hasTail || pb.Aggregator != (aggRef{}) {
		t.Errorf("good version 1 body: %+v, %v", pb, err)
	}
	pb, err = decodePositions(2, []byte(`{"agent":"a","aggregator":{"addr":"10.0.0.2:7400","id":"agg-2"},"sources":[{"id":"00000000000000ff","fingerprint":"02","fingerprint_len":10,"pos":5000,"tail_fingerprint":"0000000000000003","tail_len":1024}]}`))
	if es := pb.Sources; err != nil || len(es) != 1 || es[0].TailFP != 3 || es[0].TailLen != 1024 || !es[0].hasTail || pb.Aggregator != (aggRef{"10.0.0.2:7400", "agg-2"}) {
		t.Errorf("good version 2 body: %+v, %v", pb, err)
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

// The limits a session derives from the aggregator's max frame, and that
// the largest batch they allow fits in one frame, whatever the compression
// (incompressible records, the longest names and path).
func TestFrameLimits(t *testing.T) {
	for _, tc := range []struct {
		batchBytes, maxFrame int
		want                 frameLimits
	}{
		{256 << 10, 0, frameLimits{wire.DefaultMaxFrame, 256 << 10, 8 << 20, 8<<20 - recordOverhead}},
		{maxBatchBytes, wire.DefaultMaxFrame, frameLimits{wire.DefaultMaxFrame, maxBatchBytes, 8 << 20, 8<<20 - recordOverhead}},
		{256 << 10, 64 << 10, frameLimits{64 << 10, 32 << 10, 32 << 10, 32<<10 - recordOverhead}},
		{4 << 10, 64 << 10, frameLimits{64 << 10, 4 << 10, 32 << 10, 32<<10 - recordOverhead}},
		{256 << 10, 100, frameLimits{100, minRawMax, minRawMax, minRawMax - recordOverhead}},
	} {
		if got := newFrameLimits(tc.batchBytes, tc.maxFrame); got != tc.want {
			t.Errorf("newFrameLimits(%d, %d) = %+v, want %+v", tc.batchBytes, tc.maxFrame, got, tc.want)
		}
	}

	rnd := rand.New(rand.NewChaCha8([32]byte{1}))
	meta := batch.Meta{
		Agent: strings.Repeat("a", batch.MaxNameLen), Topic: strings.Repeat("t", batch.MaxNameLen),
		Path: strings.Repeat("p", batch.MaxStringLen),
	}
	for _, maxFrame := range []int{16 << 10, 64 << 10, 1 << 20} {
		lim := newFrameLimits(maxBatchBytes, maxFrame)
		for _, comp := range []batch.Compression{batch.None, batch.Zstd, batch.S2} {
			t.Run(fmt.Sprintf("max_frame=%d/%s", maxFrame, comp), func(t *testing.T) {
				b, err := batch.NewBuilder(comp)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				// Fill the batch the way readSource does, to the cap.
				for {
					n := min(lim.lineMax, lim.rawMax-b.RawSize()-recordOverhead)
					if n <= 0 {
						break
					}
					rec := make([]byte, n)
					for i := range rec {
						rec[i] = byte(rnd.Uint32())
					}
					b.Add(time.Now().UnixNano(), rec)
				}
				out, err := b.Build(nil, meta)
				if err != nil {
					t.Fatal(err)
				}
				if size := wire.ProduceHeaderSize + len(out); size > maxFrame {
					t.Errorf("batch of %d bytes of records: frame of %d bytes, max %d", lim.rawMax, size, maxFrame)
				}
			})
		}
	}
}

// noOwnFile is claimCopy's ownHolds for entries whose own files are gone.
func noOwnFile(*posEntry) bool { return false }
