package file

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"logship/logstore/batch"
)

// resume applies the recovery rules of doc.go for one partition and
// returns where its published files stand: a marker with no Pending, File
// "" when the partition has none.
func (w *writer) resume(ctx context.Context) (marker, error) {
	fsys, root := w.s.fsFor(ctx), w.s.opts.Dir
	none := marker{Topic: w.topic, Aggregator: w.agg, Partition: w.part}
	// The directories themselves must be durable before files in them
	// can be.
	stateDir := path.Dir(w.marker)
	for _, d := range []string{w.tmpDir, stateDir} {
		if err := fsys.MkdirAll(d); err != nil {
			return none, err
		}
	}
	if err := fsys.SyncDir(root); err != nil {
		return none, err
	}

	// Rule 1: temporary files are never the truth. Delete this
	// partition's, whatever step a crash stopped them at. One that cannot
	// be deleted (still under a dead writer's HDFS lease, say) is left:
	// new temporary names are random, so it is in nobody's way.
	w.removeStale(fsys, w.tmpDir, "temporary file", func(n string) (mine, known bool) {
		return isTmpName(n, w.prefix), isAnyTmpName(n)
	})
	base := path.Base(w.marker)
	w.removeStale(fsys, stateDir, "marker's temporary file", func(n string) (mine, known bool) {
		return isMarkerTmp(n, base), strings.HasSuffix(n, markerSuffix) || strings.HasSuffix(n, tmpSuffix) || strings.HasSuffix(n, ".broken")
	})

	// Rule 2: the marker says where the published files end, and which
	// publish a crash may have interrupted.
	m, err := w.readMarker(fsys)
	if err != nil {
		return none, err
	}
	if m != nil && m.Pending != nil {
		if m, err = w.settle(ctx, fsys, m); err != nil {
			return none, err
		}
	}

	// Rule 3: the published files are the truth. With a template without
	// time fields the partition's files are in one directory: list it, as
	// a check of the marker. With time fields, list the partition's
	// directories only when there is no marker.
	var newest *Found
	if !w.s.tmpl.HasTime() || m == nil {
		files, bad, err := Scan(fsys, root, w.s.tmpl, w.topic, w.agg, w.part)
		if err != nil {
			return none, err
		}
		if m == nil && w.s.tmpl.HasTime() {
			w.log.Info("no marker: found the partition's files by listing its directories", "files", len(files))
		}
		for _, n := range bad {
			w.s.warnOnce(path.Join(root, n), "unexpected file in a directory of published files: ignored")
		}
		newest = w.newestOf(files)
	}
	st := none
	if m != nil {
		st = *m
	}
	if newest != nil {
		if n := newest.Name; n.Epoch > st.Epoch || n.Epoch == st.Epoch && n.Next() > st.Next {
			if m != nil {
				w.log.Warn("published files go further than the marker says: resuming after the files", "file", newest.Path(), "marker_offset", m.Next)
			}
			st.Epoch, st.Next, st.File = n.Epoch, n.Next(), newest.Path()
		}
	}
	if st.File == "" {
		return st, nil
	}
	// The newest file: check it is there, and make what a crash may have
	// left un-synced in its directory durable before anyone commits it.
	if newest == nil || newest.Path() != st.File {
		if _, err := fsys.Stat(path.Join(root, st.File)); errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("the newest published file the marker names is gone (moved or deleted by someone else): resuming after it all the same",
				"file", st.File, "offset", st.Next)
			return st, nil
		} else if err != nil {
			return none, err
		}
	}
	if err := fsys.SyncDir(path.Join(root, path.Dir(st.File))); err != nil {
		return none, err
	}
	return st, nil
}

// removeStale deletes the files of dir that are this partition's (mine),
// and warns once about those that are nobody's (neither mine nor known).
func (w *writer) removeStale(fsys FS, dir, what string, classify func(n string) (mine, known bool)) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		w.s.stats.failed("recover")
		w.log.Warn("listing stale "+what+"s: left for the next open", "dir", dir, "err", err)
		return
	}
	removed := 0
	for _, n := range names {
		mine, known := classify(n)
		if !mine {
			if !known {
				w.s.warnOnce(path.Join(dir, n), "unexpected file in the sink's directory: ignored")
			}
			continue
		}
		p := path.Join(dir, n)
		if err := fsys.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.s.stats.failed("remove")
			w.log.Warn("cannot delete a stale "+what+": ignoring it", "file", p, "err", err)
			continue
		}
		w.log.Info("deleted a stale "+what+" left by an earlier run; its records are written again", "file", p)
		removed++
	}
	if removed > 0 {
		if err := fsys.SyncDir(dir); err != nil {
			w.log.Warn("sync directory after deleting stale files", "dir", dir, "err", err)
		}
	}
}

// settle finishes the publish a marker names as pending: the file is
// published when its final name exists (the crash came between the rename
// and the marker after it), and was not when it does not (the crash came
// before the rename; its temporary file was deleted with the others). The
// marker is rewritten without the pending file.
func (w *writer) settle(ctx context.Context, fsys FS, m *marker) (*marker, error) {
	p := m.Pending
	_, err := fsys.Stat(path.Join(w.s.opts.Dir, p.File))
	switch {
	case err == nil:
		n, _ := ParseName(path.Base(p.File)) // checked by decodeMarker
		w.log.Info("the last publish before a crash had completed", "file", p.File, "offset", p.Next)
		m.Epoch, m.Next, m.File = n.Epoch, p.Next, p.File
	case errors.Is(err, fs.ErrNotExist):
		w.log.Info("the last publish before a crash had not completed: its records are written again", "file", p.File, "offset", m.Next)
	default:
		return nil, err
	}
	m.Pending = nil
	if err := w.retry(ctx, "marker", func() error { return w.writeMarker(fsys, m) }); err != nil {
		return nil, err
	}
	return m, nil
}

// newestOf returns the partition's file with the highest last offset among
// those of the highest epoch, and warns about overlapping files.
func (w *writer) newestOf(files []Found) *Found {
	var newest, prev *Found
	for i := range files {
		f := &files[i]
		if prev != nil && f.Name.Epoch == prev.Name.Epoch && f.Name.First <= prev.Name.Last {
			w.s.warnOnce(path.Join(w.s.opts.Dir, f.Path()), "published files overlap: records are duplicated", "other", prev.Path())
		}
		prev = f
		if newest == nil || f.Name.Epoch > newest.Name.Epoch || f.Name.Epoch == newest.Name.Epoch && f.Name.Last > newest.Name.Last {
			newest = f
		}
	}
	return newest
}

// Found is a published file found by Scan.
type Found struct {
	Dir  string // relative to the sink's directory
	Name FileName
}

// Path is the file's path relative to the sink's directory.
func (f Found) Path() string { return path.Join(f.Dir, f.Name.String()) }

// Scan returns the published files of one partition under dir, laid out
// by tmpl, sorted by epoch and offsets, and the names (relative to dir)
// in the partition's directories that are not published files. It lists
// only the directories tmpl can give the partition: one without time
// fields, those whose names match the time fields' digits otherwise. A
// missing directory has no files.
func Scan(fsys FS, dir string, tmpl Template, topic, agg string, partition int) (files []Found, bad []string, err error) {
	dirs := []string{""}
	if !tmpl.HasTime() {
		dirs = []string{tmpl.Render(topic, agg, partition, time.Time{})}
	} else {
		for i := range tmpl.segs {
			var next []string
			for _, d := range dirs {
				names, err := readDirIfDir(fsys, path.Join(dir, d))
				if err != nil {
					return nil, nil, err
				}
				for _, n := range names {
					if tmpl.matchSegment(i, n, topic, agg, partition) && !(i == 0 && (n == TmpDir || n == StateDir)) {
						next = append(next, path.Join(d, n))
					}
				}
			}
			dirs = next
		}
	}
	for _, d := range dirs {
		names, err := readDirIfDir(fsys, path.Join(dir, d))
		if err != nil {
			return nil, nil, err
		}
		for _, n := range names {
			fn, err := ParseName(n)
			if err != nil {
				if d == "" && (n == TmpDir || n == StateDir) || isDirLike(tmpl, n) {
					continue
				}
				bad = append(bad, path.Join(d, n))
				continue
			}
			if fn.Topic == topic && fn.Aggregator == agg && fn.Partition == partition {
				files = append(files, Found{Dir: d, Name: fn})
			}
		}
	}
	slices.SortFunc(files, func(a, b Found) int {
		return cmp.Or(cmp.Compare(a.Name.Epoch, b.Name.Epoch), cmp.Compare(a.Name.First, b.Name.First), cmp.Compare(a.Name.Last, b.Name.Last))
	})
	slices.Sort(bad)
	return files, bad, nil
}

// isDirLike reports whether n, found beside published files, is no cause
// for a warning: with the root as the template, the topics' directories of
// an older layout.
func isDirLike(tmpl Template, n string) bool {
	return len(tmpl.segs) == 0 && batch.ValidName(n) && !strings.Contains(n, sep)
}

// readDirIfDir lists dir: nothing when it is missing or is not a directory.
func readDirIfDir(fsys FS, dir string) ([]string, error) {
	names, err := fsys.ReadDir(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return names, nil
	}
	if fi, serr := fsys.Stat(dir); serr == nil && !fi.IsDir() {
		return nil, nil
	}
	return nil, err
}

// isAnyTmpName reports whether n is the temporary file of any partition
// (those of other partitions are no concern of this Open).
func isAnyTmpName(n string) bool {
	f := strings.SplitN(n, sep, 4)
	if len(f) != 4 || !batch.ValidName(f[0]) || !batch.ValidName(f[1]) {
		return false
	}
	if p, ok := parseDecimal(f[2]); !ok || strconv.FormatInt(p, 10) != f[2] {
		return false
	}
	return isTmpName(n, f[0]+sep+f[1]+sep+f[2]+sep)
}

// List returns the published files of topic under dir/topic (the layout
// of the default template "{topic}"), sorted by aggregator, partition and
// first offset, and the names in the topic's directory that are not
// published files of that topic. A missing directory is no error: it has
// no files.
func List(fsys FS, dir, topic string) (files []FileName, bad []string, err error) {
	names, err := fsys.ReadDir(path.Join(dir, topic))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		fn, err := ParseName(n)
		if err != nil || fn.Topic != topic {
			bad = append(bad, n)
			continue
		}
		files = append(files, fn)
	}
	slices.SortFunc(files, func(a, b FileName) int {
		return cmp.Or(strings.Compare(a.Aggregator, b.Aggregator), cmp.Compare(a.Partition, b.Partition),
			cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	slices.Sort(bad)
	return files, bad, nil
}

// errExists is the cause of a publish refused because the final name is
// taken.
var errExists = errors.New("exists already: not overwriting a published file")

// retry runs op, and runs it again up to Options.Retries times with a
// growing backoff while it fails with an error that may pass (not a
// permission, not a name taken) and ctx is live. Each failure counts
// in the stats under step.
func (w *writer) retry(ctx context.Context, step string, op func() error) error {
	d := w.s.opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			if attempt > 0 {
				w.log.Info("retry succeeded", "step", step, "attempts", attempt+1)
			}
			return nil
		}
		w.s.stats.failed(step)
		if attempt >= w.s.opts.Retries || errors.Is(err, fs.ErrPermission) || errors.Is(err, errExists) || ctx.Err() != nil {
			return err
		}
		w.s.stats.retries.Add(1)
		w.log.Warn("filesystem operation failed, retrying", "step", step, "attempt", attempt+1, "backoff", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
		d = min(d*2, maxRetryBackoff)
	}
}
