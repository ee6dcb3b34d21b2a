package file_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"logship/sinks"
	"logship/sinks/file"
	"logship/sinks/hdfs"
	"logship/sinks/internal/crashfs"
	"logship/sinks/internal/faultfs"
	"logship/sinks/internal/sinktest"
)

// base is the time of record 0 in these tests; record o is 10·o minutes
// later, so that files of a time template spread over hours and days.
var base = time.Date(2024, 5, 1, 22, 30, 0, 0, time.UTC)

// trec is rec with the metadata the json format and the templates use.
func trec(part int, off int64) *sinks.Record {
	r := rec(part, off)
	r.Time = base.Add(time.Duration(off) * 10 * time.Minute).UnixNano()
	r.AppendTime = r.Time/1e6 + 5
	r.Host = "web-1"
	r.Source = "/var/log/app.log"
	return r
}

// engines are the configurations every engine test runs: the file sink's
// defaults, and what the HDFS sink uses (a time template, compression,
// json, in-place retries).
var engines = []struct {
	name string
	opts file.Options
}{
	{"file", file.Options{}},
	{"hdfs-like", file.Options{Path: "{topic}/{yyyy}/{mm}/{dd}/{hh}", Compression: file.CompressionZstd, Format: file.FormatJSON, Retries: 2, RetryBackoff: time.Millisecond}},
	{"gzip-lines", file.Options{Path: "logs/{aggregator}-{partition}/{yyyy}{mm}{dd}", Compression: file.CompressionGzip}},
}

// engineRun writes records [0, n) of partition 0 on a fresh sink over fsys
// rolling every few records and on idle, until an error stops it, and
// returns the highest offset reported as published.
func engineRun(fsys file.FS, root string, o file.Options, n int64) (reported int64) {
	ctx := context.Background()
	reported = -1
	o.Dir, o.FS, o.BufferSize = root, fsys, 7
	o.RollSize = 4 * lineSize
	if o.Compression != "" || o.Format == file.FormatJSON {
		o.RollSize = 1 << 30 // small files by idle time instead
	}
	s, err := file.New(o)
	if err != nil {
		return reported
	}
	defer s.Close()
	w, next, err := s.Open(ctx, sinks.Partition{Aggregator: agg, Topic: topic, Partition: 0, Committed: -1})
	if err != nil {
		return reported
	}
	defer w.Close(ctx)
	next = max(next, 0)
	reported = next
	for o := next; o < n; o++ {
		if err := w.Write(ctx, trec(0, o)); err != nil {
			return reported
		}
		if o%3 == 2 {
			off, err := w.Tick(ctx, time.Now().Add(time.Hour))
			if err != nil {
				return reported
			}
			reported = max(reported, off)
		}
	}
	off, err := w.Close(ctx)
	if err != nil {
		return reported
	}
	return max(reported, off)
}

// TestEngineCrashAtEveryStep kills the sink before each FS operation of a
// clean run in turn, restarts it, and checks that every record is
// published exactly once, for each engine configuration, on a local
// directory (a process crash: what was written stays) and on crashfs (a
// power cut: what was not synced is lost). The operations include the
// four named in issue 6: before a write, mid-write, after the close
// before the rename, after the rename before the marker.
func TestEngineCrashAtEveryStep(t *testing.T) {
	const n = 14
	for _, e := range engines {
		for _, medium := range []string{"localdir", "powercut"} {
			t.Run(e.name+"/"+medium, func(t *testing.T) {
				// Name the operations of a clean run.
				var ops []string
				clean := newTestFS(t, medium, func(op crashfs.Op, name string) error {
					ops = append(ops, fmt.Sprintf("%02d_%s_%s", len(ops), op, kindOf(name)))
					return nil
				})
				if got := engineRun(clean.fs, clean.root, e.opts, n); got != n {
					t.Fatalf("clean run reported %d", got)
				}
				checkOnce(t, clean, e.opts, n)
				for _, want := range []string{"_write_tmp", "_close_tmp", "_rename_tmp", "_rename_markertmp"} {
					if !slices.ContainsFunc(ops, func(s string) bool { return strings.HasSuffix(s, want) }) {
						t.Fatalf("no %s in a clean run: %q", want, ops)
					}
				}
				for k := range len(ops) + 1 {
					name := "after_the_last"
					if k < len(ops) {
						name = ops[k]
					}
					t.Run(name, func(t *testing.T) {
						i := 0
						var tf *testFS
						tf = newTestFS(t, medium, func(op crashfs.Op, name string) error {
							if i == k {
								return tf.kill()
							}
							i++
							return nil
						})
						reported := engineRun(tf.fs, tf.root, e.opts, n)
						tf.revive()
						recs := publishedOf(t, tf, e.opts)
						if int64(len(recs)) < reported {
							t.Fatalf("reported %d as published, but after the crash the files hold %d records", reported, len(recs))
						}
						sinktest.CheckExactlyOnce(t, recs, topic, 0, sinktest.Range(0, int64(len(recs))))
						if got := engineRun(tf.fs, tf.root, e.opts, n); got != n {
							t.Fatalf("restart reported %d, want %d", got, n)
						}
						checkOnce(t, tf, e.opts, n)
					})
				}
			})
		}
	}
}

// testFS is a faultable FS: faultfs over a local directory (a process
// crash: what reached the directory stays), or crashfs (a power cut: what
// was not synced is lost).
type testFS struct {
	fs     file.FS
	root   string
	read   sinktest.ReadFunc
	kill   func() error // kills the FS and returns the error to fail the op with
	revive func()
}

func newTestFS(t *testing.T, medium string, hook func(op crashfs.Op, name string) error) *testFS {
	if medium == "localdir" {
		ff := faultfs.Wrap(file.OSFS{})
		ff.SetHook(hook)
		return &testFS{
			fs: ff, root: filepath.ToSlash(t.TempDir()), read: osRead,
			kill:   func() error { ff.Kill(); return faultfs.ErrDead },
			revive: func() { ff.SetHook(nil) },
		}
	}
	cf := crashfs.New()
	cf.SetHook(func(op crashfs.Op, name string, after bool) error {
		if after {
			return nil
		}
		return hook(op, name)
	})
	return &testFS{
		fs: cf, root: "/data", read: cf.ReadFile,
		kill:   func() error { cf.Kill(); return crashfs.ErrDead },
		revive: func() { cf.SetHook(nil); cf.Crash() },
	}
}

func kindOf(name string) string {
	switch {
	case strings.Contains(name, "/"+file.StateDir+"/") && strings.HasSuffix(name, ".tmp"):
		return "markertmp"
	case strings.HasSuffix(name, ".marker"):
		return "marker"
	case strings.HasSuffix(name, ".tmp"):
		return "tmp"
	}
	return strings.ReplaceAll(path.Base(name), "_", "")
}

func publishedOf(t *testing.T, tf *testFS, o file.Options) []sinktest.Record {
	t.Helper()
	p := o.Path
	if p == "" {
		p = file.DefaultPath
	}
	return sinktest.PublishedAt(t, tf.fs, tf.read, tf.root, p, topic, agg, 0)
}

// checkOnce checks that [0, n) is published exactly once, and that no
// temporary file is left.
func checkOnce(t *testing.T, tf *testFS, o file.Options, n int64) {
	t.Helper()
	sinktest.CheckExactlyOnce(t, publishedOf(t, tf, o), topic, 0, sinktest.Range(0, n))
	for _, d := range []string{file.TmpDir, file.StateDir} {
		names, err := tf.fs.ReadDir(path.Join(tf.root, d))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".tmp") {
				t.Fatalf("temporary file left: %s/%s", d, n)
			}
		}
	}
}

// TestFormatsReadBack writes every format and compression, reads the files
// back (gzip -d, zstd -d, JSON) and compares them record by record, the
// json metadata included, with data that needs escaping.
func TestFormatsReadBack(t *testing.T) {
	ctx := context.Background()
	odd := []string{"plain", `quote " and \ backslash`, "tab\tand\rcr", "ctl \x01\x1f", "utf8 é ☃ \u2028", "bad utf8 \xff\xfe end", "<html>&"}
	for _, format := range []string{file.FormatLines, file.FormatJSON} {
		for _, comp := range []string{file.CompressionNone, file.CompressionGzip, file.CompressionZstd} {
			t.Run(format+"/"+comp, func(t *testing.T) {
				dir := t.TempDir()
				tmpl := "{topic}/{yyyy}/{mm}/{dd}/{hh}"
				s := newSink(t, file.Options{Dir: dir, Path: tmpl, Format: format, Compression: comp, RollSize: 16 << 10})
				w, _ := open(t, s, 0)
				const n = 3000
				var want []string
				for o := int64(0); o < n; o++ {
					r := trec(0, o)
					if o < int64(len(odd)) && format == file.FormatJSON {
						r.Data = []byte(odd[o])
					}
					want = append(want, strings.ToValidUTF8(string(r.Data), "\uFFFD\uFFFD")) // two bad bytes, two replacements
					if err := w.Write(ctx, r); err != nil {
						t.Fatal(err)
					}
				}
				if off, err := w.Close(ctx); err != nil || off != n {
					t.Fatalf("close: %d, %v", off, err)
				}
				recs := sinktest.PublishedAt(t, file.OSFS{}, osRead, dir, tmpl, topic, agg, 0)
				if len(recs) != n {
					t.Fatalf("%d records read back, want %d", len(recs), n)
				}
				for i, r := range recs {
					if r.Offset != int64(i) || r.Line != want[i] {
						t.Fatalf("record %d: offset %d %q, want %q", i, r.Offset, r.Line, want[i])
					}
				}
				files, _, err := file.Scan(file.OSFS{}, dir, file.MustParseTemplate(tmpl), topic, agg, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(files) < 3 {
					t.Fatalf("want files in several hourly directories and rolled by size: %v", files)
				}
				for _, f := range files {
					if f.Name.Format() != format || f.Name.Compression() != comp {
						t.Fatalf("%s: format %s, compression %s", f.Name, f.Name.Format(), f.Name.Compression())
					}
					// The directory is the hour of the file's first record.
					first := time.Unix(0, trec(0, f.Name.First).Time).UTC()
					if wantDir := first.Format("app/2006/01/02/15"); f.Dir != wantDir {
						t.Fatalf("%s in %s, want %s", f.Name, f.Dir, wantDir)
					}
					fi, err := os.Stat(filepath.Join(dir, f.Path()))
					if err != nil || fi.Size() > 16<<10 {
						t.Fatalf("%s: %d bytes, %v: past the roll size", f.Name, fi.Size(), err)
					}
				}
				if format == file.FormatJSON {
					checkJSONMetadata(t, dir, files[1])
				}
			})
		}
	}
}

// checkJSONMetadata checks the first record of a json file field by field.
func checkJSONMetadata(t *testing.T, dir string, f file.Found) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, f.Path()))
	if err != nil {
		t.Fatal(err)
	}
	var r sinktest.JSONRecord
	b = sinktest.Decompress(t, f.Name, b)
	line, _, _ := strings.Cut(string(b), "\n")
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	want := trec(0, f.Name.First)
	if r.Offset != want.Offset || !r.Time.Equal(time.Unix(0, want.Time)) || !r.AppendTime.Equal(time.UnixMilli(want.AppendTime)) ||
		r.Host != want.Host || r.Source != want.Source || r.Partition != 0 || r.Topic != topic || r.Aggregator != agg {
		t.Fatalf("json record %+v, want %+v", r, want)
	}
}

// TestIdleRollByTimer: with the HDFS defaults (idle 5m, interval 15m), a
// file is published by Tick alone, on the fake clock of a synctest
// bubble: not at 4m59s of silence, at 5m. PITFALLS: idle partitions sit
// in temp files for hours when rolling is checked only on write
// (kafka-connect-hdfs #329).
func TestIdleRollByTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		fsys := crashfs.New()
		s := newSink(t, file.Options{Dir: "/d", FS: fsys, IdleTimeout: 5 * time.Minute, RollInterval: 15 * time.Minute})
		w, _ := open(t, s, 0)
		write(t, w, 0, 0, 3)
		// A ticker as the runtime has: every second, no record.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start := time.Now()
		for {
			now := <-tick.C
			off, err := w.Tick(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if off >= 0 {
				if off != 3 {
					t.Fatalf("published up to %d, want 3", off)
				}
				if idle := now.Sub(start); idle < 5*time.Minute || idle > 5*time.Minute+time.Second {
					t.Fatalf("published after %s idle, want 5m", idle)
				}
				break
			}
		}
		// The age limit: records every 10s keep the file busy; it is
		// published 15m after its first record all the same.
		write(t, w, 0, 3, 4)
		start = time.Now()
		for o := int64(4); ; o++ {
			time.Sleep(10 * time.Second)
			write(t, w, 0, o, o+1)
			off, err := w.Tick(ctx, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if off >= 0 {
				if age := time.Since(start); age < 15*time.Minute || age > 15*time.Minute+10*time.Second {
					t.Fatalf("published at age %s, want 15m", age)
				}
				break
			}
		}
		w.Close(ctx)
		sinktest.CheckExactlyOnce(t, sinktest.Published(t, fsys, fsys.ReadFile, "/d", topic, agg, 0)[:3], topic, 0, sinktest.Range(0, 3))
	})
}

// TestInjectedErrors fails one kind of operation with permission denied,
// a quota, or a passing error, then lets it through, and checks what
// follows: retried in place when only names are at stake and the error may
// pass; otherwise the file thrown away, nothing half or empty published,
// the stats counting it, and every record exactly once after a reopen.
func TestInjectedErrors(t *testing.T) {
	errQuota := errors.New("DSQuotaExceededException: the quota of /logs is exceeded")
	cases := []struct {
		name      string
		op        crashfs.Op
		kind      string // what the op is on: tmp, marker, final
		err       error
		times     int  // how many times it fails
		inPlace   bool // the publish survives it
		step      string
		abandoned bool
	}{
		{"create permission denied", crashfs.OpCreate, "tmp", fs.ErrPermission, 1, false, "create", false},
		{"write quota", crashfs.OpWrite, "tmp", errQuota, 1, false, "flush", true},
		{"close quota", crashfs.OpClose, "tmp", errQuota, 1, false, "close", true},
		{"rename passing", crashfs.OpRename, "tmp", errors.New("namenode failing over"), 2, true, "rename", false},
		{"rename permission denied", crashfs.OpRename, "tmp", fs.ErrPermission, 1, false, "rename", true},
		{"marker quota", crashfs.OpCreate, "markertmp", errQuota, 1, true, "marker", false},
		{"marker stuck", crashfs.OpCreate, "markertmp", errQuota, 10, false, "marker", true},
		{"mkdir permission denied", crashfs.OpMkdir, "final", fs.ErrPermission, 1, false, "mkdir", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.ToSlash(t.TempDir())
			ff := faultfs.Wrap(file.OSFS{})
			left := 0
			ff.SetHook(func(op crashfs.Op, name string) error {
				k := kindOf(name)
				if strings.Contains(name, "/2024/") {
					k = "final"
				}
				if op == c.op && k == c.kind && left > 0 {
					left--
					return c.err
				}
				return nil
			})
			o := file.Options{Dir: dir, FS: ff, Path: "{topic}/{yyyy}/{mm}", RollSize: 4 * lineSize, BufferSize: 16, Retries: 3, RetryBackoff: time.Millisecond}
			s := newSink(t, o)
			w, _ := open(t, s, 0)
			write(t, w, 0, 0, 4) // one full file, not yet published
			left = c.times
			err := w.Write(ctx, trec(0, 4)) // publishes 0-3, starts 4
			if c.inPlace {
				if err != nil {
					t.Fatalf("write: %v; want the %s retried in place", err, c.step)
				}
			} else if err == nil {
				if _, err = w.Tick(ctx, time.Now().Add(time.Hour)); err == nil {
					t.Fatal("no error")
				}
			}
			off, cerr := w.Close(ctx)
			st := s.Stats()
			if st.Errors[c.step] == 0 {
				t.Fatalf("stats: no error counted for %s: %+v", c.step, st)
			}
			if c.inPlace {
				if cerr != nil || off != 5 || st.Retries != uint64(c.times) {
					t.Fatalf("close %d, %v; retries %d, want %d", off, cerr, st.Retries, c.times)
				}
			} else if (st.Abandoned > 0) != c.abandoned {
				t.Fatalf("abandoned %d, want %v", st.Abandoned, c.abandoned)
			}
			if st.OpenFiles != 0 {
				t.Fatalf("%d files still open", st.OpenFiles)
			}
			// Nothing half or empty published: what is there is whole.
			recs := sinktest.PublishedAt(t, file.OSFS{}, osRead, dir, o.Path, topic, agg, 0)
			sinktest.CheckExactlyOnce(t, recs, topic, 0, sinktest.Range(0, int64(len(recs))))

			// The error passed: a new writer resumes where the files end.
			left = 0
			w, next := open(t, s, 0)
			if int64(len(recs)) != max(next, 0) {
				t.Fatalf("reopened at %d, files hold %d", next, len(recs))
			}
			for off := max(next, 0); off < 10; off++ {
				if err := w.Write(ctx, trec(0, off)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			recs = sinktest.PublishedAt(t, file.OSFS{}, osRead, dir, o.Path, topic, agg, 0)
			sinktest.CheckExactlyOnce(t, recs, topic, 0, sinktest.Range(0, 10))
			if names, _ := os.ReadDir(filepath.Join(dir, file.TmpDir)); len(names) != 0 {
				t.Fatalf("temporary files left: %v", names)
			}
		})
	}
}

// TestRecoveryWithMarker: with a time template, a restart learns where
// the partition stands from its marker and one Stat, without listing a
// single directory of published files; a damaged marker is set aside and
// the partition's directories listed instead; a file moved away by
// someone else is logged and not written again.
func TestRecoveryWithMarker(t *testing.T) {
	ctx := context.Background()
	dir := filepath.ToSlash(t.TempDir())
	tmpl := "{topic}/{yyyy}/{mm}/{dd}/{hh}"
	log, logger := sinktest.New(t)
	ff := faultfs.Wrap(file.OSFS{})
	o := file.Options{Dir: dir, FS: ff, Path: tmpl, RollSize: 5 * lineSize, Logger: logger}
	s := newSink(t, o)
	w, _ := open(t, s, 0)
	for off := int64(0); off < 40; off++ {
		if err := w.Write(ctx, trec(0, off)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close(ctx)

	var listed []string
	ff.SetHook(func(op crashfs.Op, name string) error {
		if op == crashfs.OpReadDir {
			listed = append(listed, strings.TrimPrefix(name, dir))
		}
		return nil
	})
	w, next := open(t, s, 0)
	w.Close(ctx)
	if next != 40 {
		t.Fatalf("next %d, want 40", next)
	}
	if want := []string{"/_tmp", "/_state"}; !slices.Equal(listed, want) {
		t.Fatalf("listed %q, want only %q", listed, want)
	}

	// Damage the marker: it is set aside, the directories are listed.
	mk := filepath.Join(dir, file.StateDir, "app+agg-1+0.marker")
	b, err := os.ReadFile(mk)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 1
	mustWrite(t, mk, string(b))
	listed = nil
	w, next = open(t, s, 0)
	if next != 40 || len(listed) < 5 {
		t.Fatalf("next %d after listing %q", next, listed)
	}
	if _, err := os.Stat(mk + ".broken"); err != nil {
		t.Fatalf("damaged marker not kept: %v", err)
	}
	if len(log.Find(slog.LevelError, "damaged marker")) == 0 {
		t.Fatal("no ERROR about the damaged marker")
	}
	write(t, w, 0, 40, 41) // a new marker
	w.Close(ctx)

	// The newest file moved away (a downstream job took it): the marker
	// is trusted, the records are not written again.
	files, _, _ := file.Scan(file.OSFS{}, dir, file.MustParseTemplate(tmpl), topic, agg, 0)
	newest := files[len(files)-1]
	if err := os.Rename(filepath.Join(dir, newest.Path()), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	ff.SetHook(nil)
	w, next = open(t, s, 0)
	w.Close(ctx)
	if next != 41 {
		t.Fatalf("next %d, want 41", next)
	}
	if len(log.Find(slog.LevelWarn, "is gone")) == 0 {
		t.Fatal("no WARN about the moved file")
	}
}

// replayRun is engineRun for any partition description p (epoch,
// committed): it opens the writer as the runtime does (Open's offset, else
// p.Committed, else 0) and writes up to n, returning the highest offset
// reported as published (start when none).
func replayRun(fsys file.FS, root string, o file.Options, p sinks.Partition, n int64) (start, reported int64) {
	ctx := context.Background()
	reported = -1
	o.Dir, o.FS, o.BufferSize = root, fsys, 7
	o.RollSize = 4 * lineSize
	if o.Compression != "" || o.Format == file.FormatJSON {
		o.RollSize = 1 << 30
	}
	s, err := file.New(o)
	if err != nil {
		return -1, reported
	}
	defer s.Close()
	w, next, err := s.Open(ctx, p)
	if err != nil {
		return -1, reported
	}
	defer w.Close(ctx)
	if next < 0 {
		next = max(p.Committed, 0)
	}
	start, reported = next, next
	for o := next; o < n; o++ {
		if err := w.Write(ctx, trec(0, o)); err != nil {
			return start, reported
		}
		if o%3 == 2 {
			off, err := w.Tick(ctx, time.Now().Add(time.Hour))
			if err != nil {
				return start, reported
			}
			reported = max(reported, off)
		}
	}
	off, err := w.Close(ctx)
	if err != nil {
		return start, reported
	}
	return start, max(reported, off)
}

// splitEpochs returns the records of epoch 0 and of epoch 1.
func splitEpochs(recs []sinktest.Record) (e0, e1 []sinktest.Record) {
	for _, r := range recs {
		if r.Epoch == 0 {
			e0 = append(e0, r)
		} else {
			e1 = append(e1, r)
		}
	}
	return e0, e1
}

// TestReplayCrashAtEveryStep: after an operator's reset (epoch 1, to
// offset 5, inside the first published file), the sink replays; a crash is
// injected before each FS operation of the replay, then the sink restarts
// as the runtime restarts it (epoch 1, the commit the runtime made from
// what was reported, else the reset offset). The epoch-0 files must stay
// as they were, and the replay must hold 5..n-1 exactly once at epoch 1.
func TestReplayCrashAtEveryStep(t *testing.T) {
	const n, reset = 14, 5
	for _, e := range engines {
		for _, medium := range []string{"localdir", "powercut"} {
			t.Run(e.name+"/"+medium, func(t *testing.T) {
				// Count the replay's operations in a clean run.
				count, counting := 0, false
				clean := newTestFS(t, medium, func(crashfs.Op, string) error {
					if counting {
						count++
					}
					return nil
				})
				p0 := sinks.Partition{Aggregator: agg, Topic: topic, Committed: -1}
				if _, got := replayRun(clean.fs, clean.root, e.opts, p0, n); got != n {
					t.Fatalf("epoch 0 run reported %d", got)
				}
				counting = true
				p1 := sinks.Partition{Aggregator: agg, Topic: topic, Committed: reset, Epoch: 1}
				if start, got := replayRun(clean.fs, clean.root, e.opts, p1, n); start != reset || got != n {
					t.Fatalf("replay run started at %d, reported %d", start, got)
				}
				for k := 0; k <= count; k++ {
					t.Run(fmt.Sprint(k), func(t *testing.T) {
						i, armed := 0, false
						var tf *testFS
						tf = newTestFS(t, medium, func(crashfs.Op, string) error {
							if !armed {
								return nil
							}
							if i == k {
								return tf.kill()
							}
							i++
							return nil
						})
						replayRun(tf.fs, tf.root, e.opts, p0, n)
						armed = true
						_, reported := replayRun(tf.fs, tf.root, e.opts, p1, n)
						armed = false
						tf.revive()
						// The runtime committed what was reported at epoch 1.
						restart := p1
						if reported > reset {
							restart.Committed = reported
						}
						if start, got := replayRun(tf.fs, tf.root, e.opts, restart, n); got != n {
							t.Fatalf("restart at %d reported %d, want %d", start, got, n)
						}
						e0, e1 := splitEpochs(publishedOf(t, tf, e.opts))
						sinktest.CheckExactlyOnce(t, e0, topic, 0, sinktest.Range(0, n))
						sinktest.CheckExactlyOnce(t, e1, topic, 0, sinktest.Range(reset, n))
					})
				}
			})
		}
	}
}

// TestSettledFirstPublishMarkerIsNotDamaged: the first publish of
// a partition stops between its intent marker and its rename (the rename
// fails, the process dies). The next Open settles the marker: nothing
// published, so it rewrites it with no file and no pending publish. That
// marker is the sink's own: the Open after must read it as it is, not set
// it aside as damaged (.broken, an ERROR, and with a time template a
// listing of every directory of the partition).
func TestSettledFirstPublishMarkerIsNotDamaged(t *testing.T) {
	ctx := context.Background()
	dir := filepath.ToSlash(t.TempDir())
	log, logger := sinktest.New(t)
	ff := faultfs.Wrap(file.OSFS{})
	o := file.Options{Dir: dir, FS: ff, Path: "{topic}/{yyyy}/{mm}/{dd}/{hh}", Logger: logger}
	s := newSink(t, o)
	w, _ := open(t, s, 0)
	for off := int64(0); off < 3; off++ {
		if err := w.Write(ctx, trec(0, off)); err != nil {
			t.Fatal(err)
		}
	}
	ff.SetHook(func(op crashfs.Op, name string) error {
		if op == crashfs.OpRename && strings.Contains(name, "/"+file.TmpDir+"/") {
			ff.Kill()
			return faultfs.ErrDead
		}
		return nil
	})
	if off, err := w.Close(ctx); err == nil || off >= 0 {
		t.Fatalf("close: %d, %v; want the rename to fail", off, err)
	}
	ff.SetHook(nil)

	// Restart: the pending publish is settled (not published).
	w, next := open(t, s, 0)
	if next != -1 {
		t.Fatalf("next %d, want -1", next)
	}
	w.Close(ctx)
	// Restart again, before anything was published.
	w, next = open(t, s, 0)
	w.Close(ctx)
	if next != -1 {
		t.Fatalf("next %d, want -1", next)
	}
	if e := log.Find(slog.LevelError, "damaged marker"); len(e) > 0 {
		t.Errorf("the marker the sink itself wrote when settling is judged damaged: %v", e[0])
	}
	if _, err := os.Stat(path.Join(dir, file.StateDir, "app+agg-1+0.marker.broken")); err == nil {
		t.Errorf("the sink's own marker was set aside as .broken")
	}
}

// hungFS is a crashfs whose namespace operations, once hung is set, take
// the HDFS FS's default Timeout (a NameNode that stopped answering, failed
// by the deadline on its connection) and then fail; through WithContext,
// as the HDFS FS does, they return when their context ends, if sooner.
type hungFS struct {
	*crashfs.FS
	hung bool
}

var _ file.ContextFS = (*hungFS)(nil)

func (h *hungFS) stall(ctx context.Context, op, name string) error {
	if !h.hung {
		return nil
	}
	t := time.NewTimer(hdfs.DefaultTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		return fmt.Errorf("%s %s: hdfs: namenode unavailable: i/o timeout", op, name)
	case <-ctx.Done():
		return fmt.Errorf("%s %s: hdfs: gave up waiting for the namenode: %w", op, name, ctx.Err())
	}
}

func (h *hungFS) WithContext(ctx context.Context) file.FS { return hungView{h, ctx} }

func (h *hungFS) MkdirAll(d string) error { return hungView{h, context.Background()}.MkdirAll(d) }
func (h *hungFS) Stat(n string) (os.FileInfo, error) {
	return hungView{h, context.Background()}.Stat(n)
}
func (h *hungFS) Remove(n string) error    { return hungView{h, context.Background()}.Remove(n) }
func (h *hungFS) Rename(a, b string) error { return hungView{h, context.Background()}.Rename(a, b) }
func (h *hungFS) ReadDir(d string) ([]string, error) {
	return hungView{h, context.Background()}.ReadDir(d)
}
func (h *hungFS) ReadFile(n string) ([]byte, error) {
	return hungView{h, context.Background()}.ReadFile(n)
}
func (h *hungFS) Create(n string) (file.File, error) {
	return hungView{h, context.Background()}.Create(n)
}

// hungView is a hungFS bounded by ctx.
type hungView struct {
	h   *hungFS
	ctx context.Context
}

func (v hungView) MkdirAll(d string) error {
	if err := v.h.stall(v.ctx, "mkdir", d); err != nil {
		return err
	}
	return v.h.FS.MkdirAll(d)
}

func (v hungView) Stat(n string) (os.FileInfo, error) {
	if err := v.h.stall(v.ctx, "stat", n); err != nil {
		return nil, err
	}
	return v.h.FS.Stat(n)
}

func (v hungView) Remove(n string) error {
	if err := v.h.stall(v.ctx, "remove", n); err != nil {
		return err
	}
	return v.h.FS.Remove(n)
}

func (v hungView) Rename(a, b string) error {
	if err := v.h.stall(v.ctx, "rename", a); err != nil {
		return err
	}
	return v.h.FS.Rename(a, b)
}

func (v hungView) ReadDir(d string) ([]string, error) {
	if err := v.h.stall(v.ctx, "readdir", d); err != nil {
		return nil, err
	}
	return v.h.FS.ReadDir(d)
}

func (v hungView) ReadFile(n string) ([]byte, error) {
	if err := v.h.stall(v.ctx, "read", n); err != nil {
		return nil, err
	}
	return v.h.FS.ReadFile(n)
}

func (v hungView) Create(n string) (file.File, error) {
	if err := v.h.stall(v.ctx, "create", n); err != nil {
		return nil, err
	}
	return v.h.FS.Create(n)
}

func (v hungView) SyncDir(d string) error { return v.h.FS.SyncDir(d) }

// TestCloseBoundedByCtx: the runtime closes a writer at shutdown with a
// 30s context (sinks.DefaultCloseTimeout), and sink.go says ctx bounds the
// time Close may take. With the NameNode hung, each namespace call of the
// HDFS FS would take its 60s Timeout: Close must give up when ctx ends,
// and leave the abandoned file for the next Open, not try to delete it
// with no time left. That Open deletes it and starts from scratch.
func TestCloseBoundedByCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fsys := &hungFS{FS: crashfs.New()}
		o := file.Options{Dir: "/d", FS: fsys, Path: "{topic}/{yyyy}/{mm}/{dd}/{hh}"}
		hdfs.ApplyDefaults(&o)
		s := newSink(t, o)
		w, _ := open(t, s, 0)
		for off := int64(0); off < 3; off++ {
			if err := w.Write(context.Background(), trec(0, off)); err != nil {
				t.Fatal(err)
			}
		}
		fsys.hung = true
		const budget = 30 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		start := time.Now()
		off, err := w.Close(ctx)
		if took := time.Since(start); took > budget || err == nil || off != -1 {
			t.Errorf("Close(ctx with %s) took %s: %d, %v; want an error within the budget", budget, took, off, err)
		}
		fsys.hung = false
		if names, _ := fsys.ReadDir("/d/" + file.TmpDir); len(names) != 1 {
			t.Fatalf("temporary files %q: want the abandoned one left", names)
		}
		w, next := open(t, s, 0)
		defer w.Close(context.Background())
		if names, _ := fsys.ReadDir("/d/" + file.TmpDir); next != -1 || len(names) != 0 {
			t.Fatalf("open: next %d, temporary files %q; want -1 and none", next, names)
		}
	})
}

// TestOpenBoundedByCtx: Open's recovery, over a hung NameNode, returns
// when its context ends (at shutdown), not after each call's Timeout.
func TestOpenBoundedByCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fsys := &hungFS{FS: crashfs.New(), hung: true}
		o := file.Options{Dir: "/d", FS: fsys, Lazy: true}
		hdfs.ApplyDefaults(&o)
		s := newSink(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, _, err := s.Open(ctx, sinks.Partition{Aggregator: agg, Topic: topic, Committed: -1})
		if took := time.Since(start); took > time.Second || err == nil {
			t.Errorf("Open(ctx of 1s) took %s: %v", took, err)
		}
	})
}
