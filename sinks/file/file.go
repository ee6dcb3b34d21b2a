package file

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"logship/logstore/batch"
	"logship/sinks"
)

// Defaults for Options.
const (
	DefaultRollSize     = 128 << 20 // the HDFS block size
	DefaultRollInterval = 15 * time.Minute
	DefaultIdleTimeout  = time.Minute
	DefaultBufferSize   = 1 << 20
)

// Options configure a Sink.
type Options struct {
	// Dir is the root directory: published files go to Dir/<topic>/, files
	// being written to Dir/_tmp/.
	Dir string
	// RollSize: a file is published before it would grow past this many
	// bytes (a single larger record makes a file of its own). Default 128 MiB.
	RollSize int64
	// RollInterval: a file is published at most this long after its first
	// record arrived. Default 15m.
	RollInterval time.Duration
	// IdleTimeout: a file is published when no record arrived for this
	// long. Default 1m.
	IdleTimeout time.Duration
	// BufferSize is the write buffer of each open file, taken from a pool
	// while a file is open. Default 1 MiB.
	BufferSize int
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
	// FS is where files are written; nil is the local filesystem (OSFS).
	FS FS
}

// Sink writes records into files, one per line, and publishes each file
// by rename when it rolls. It implements sinks.Sink; Open is safe for
// concurrent use.
type Sink struct {
	opts Options
	fs   FS
	log  *slog.Logger
	bufs sync.Pool // *bufio.Writer of BufferSize

	mu     sync.Mutex
	open   map[string]bool // partitionPrefix of partitions with an open writer
	warned map[string]bool // paths already warned about
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a Sink. It creates Dir if needed.
func New(opts Options) (*Sink, error) {
	if opts.Dir == "" {
		return nil, errors.New("file: no directory")
	}
	if opts.RollSize < 0 || opts.RollInterval < 0 || opts.IdleTimeout < 0 || opts.BufferSize < 0 {
		return nil, errors.New("file: negative roll size, interval, idle timeout or buffer size")
	}
	if opts.RollSize == 0 {
		opts.RollSize = DefaultRollSize
	}
	if opts.RollInterval == 0 {
		opts.RollInterval = DefaultRollInterval
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	s := &Sink{opts: opts, fs: opts.FS, log: opts.Logger, open: map[string]bool{}, warned: map[string]bool{}}
	s.bufs.New = func() any { return bufio.NewWriterSize(nil, opts.BufferSize) }
	if err := s.fs.MkdirAll(path.Join(opts.Dir, TmpDir)); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	return s, nil
}

// Close implements sinks.Sink. The writers are closed by their owner.
func (s *Sink) Close() error { return nil }

// Open implements sinks.Sink. It deletes the partition's temporary files
// (a crash left them; their records are written again), and returns the
// offset after the last record of the partition's newest published file
// of its highest epoch, or -1 when it has none. When p.Epoch is higher than
// every published file's, an operator reset the offset: it returns
// p.Committed, and the files it then writes carry p.Epoch in their names.
func (s *Sink) Open(ctx context.Context, p sinks.Partition) (sinks.PartitionWriter, int64, error) {
	aggregator, topic, partition := p.Aggregator, p.Topic, p.Partition
	if err := batch.CheckName("aggregator id", aggregator); err != nil {
		return nil, -1, fmt.Errorf("file: %w", err)
	}
	if err := batch.CheckName("topic", topic); err != nil {
		return nil, -1, fmt.Errorf("file: %w", err)
	}
	if topic == TmpDir {
		return nil, -1, fmt.Errorf("file: topic %q is the sink's temporary directory: not supported by the file sink", topic)
	}
	if partition < 0 {
		return nil, -1, fmt.Errorf("file: partition %d", partition)
	}
	prefix := partitionPrefix(topic, aggregator, partition)
	s.mu.Lock()
	if s.open[prefix] {
		s.mu.Unlock()
		return nil, -1, fmt.Errorf("BUG: file: partition %s/%s/%d opened twice", aggregator, topic, partition)
	}
	s.open[prefix] = true
	s.mu.Unlock()
	w := &writer{
		s: s, topic: topic, agg: aggregator, part: partition, prefix: prefix,
		topicDir: path.Join(s.opts.Dir, topic), tmpDir: path.Join(s.opts.Dir, TmpDir),
		last: -1, pub: -1,
		log: s.log.With("aggregator", aggregator, "topic", topic, "partition", partition),
	}
	next, epoch, err := w.resume()
	if err != nil {
		s.release(prefix)
		return nil, -1, fmt.Errorf("file: open %s/%s/%d: %w", aggregator, topic, partition, err)
	}
	w.epoch = epoch
	if p.Epoch > epoch {
		w.epoch, next = p.Epoch, p.Committed
		w.log.Info("replaying from an operator's reset: new files carry the epoch in their names", "offset", p.Committed, "epoch", p.Epoch)
	}
	return w, next, nil
}

func (s *Sink) release(prefix string) {
	s.mu.Lock()
	delete(s.open, prefix)
	s.mu.Unlock()
}

// warnOnce logs msg about p the first time only: every partition's Open
// lists the same directories.
func (s *Sink) warnOnce(p, msg string, args ...any) {
	s.mu.Lock()
	seen := s.warned[p]
	s.warned[p] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, append([]any{"file", p}, args...)...)
	}
}

// resume applies the recovery rules of doc.go for one partition and
// returns the next offset its published files of the highest epoch end at
// (or -1), and that epoch.
func (w *writer) resume() (int64, uint64, error) {
	fsys := w.s.fs
	// The directories themselves must be durable before files in them
	// can be.
	for _, d := range []string{w.tmpDir, w.topicDir} {
		if err := fsys.MkdirAll(d); err != nil {
			return -1, 0, err
		}
	}
	if err := fsys.SyncDir(w.s.opts.Dir); err != nil {
		return -1, 0, err
	}

	// Rule 1: temporary files are never the truth. Delete this
	// partition's, whatever step a crash stopped them at.
	names, err := fsys.ReadDir(w.tmpDir)
	if err != nil {
		return -1, 0, err
	}
	removed := 0
	for _, n := range names {
		if !isTmpName(n, w.prefix) {
			if !isAnyTmpName(n) {
				w.s.warnOnce(path.Join(w.tmpDir, n), "unexpected file in the temporary directory: ignored")
			}
			continue
		}
		p := path.Join(w.tmpDir, n)
		if err := fsys.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return -1, 0, fmt.Errorf("remove stale temporary file: %w", err)
		}
		w.log.Info("deleted a temporary file left by an earlier run; its records are written again", "file", p)
		removed++
	}
	if removed > 0 {
		if err := fsys.SyncDir(w.tmpDir); err != nil {
			return -1, 0, err
		}
	}

	// Rule 2: the published files are the truth. Resume after the newest
	// (highest last offset) of this partition.
	all, bad, err := List(fsys, w.s.opts.Dir, w.topic)
	if err != nil {
		return -1, 0, err
	}
	for _, n := range bad {
		w.s.warnOnce(path.Join(w.topicDir, n), "unexpected file in a topic directory: ignored")
	}
	var mine []FileName
	for _, fn := range all {
		if fn.Aggregator == w.agg && fn.Partition == w.part {
			mine = append(mine, fn)
		}
	}
	if len(mine) == 0 {
		return -1, 0, nil
	}
	next, epoch := int64(-1), uint64(0)
	var prev *FileName
	for i, fn := range mine {
		if prev != nil && fn.Epoch == prev.Epoch && fn.First <= prev.Last {
			w.s.warnOnce(path.Join(w.topicDir, fn.String()), "published files overlap: records are duplicated",
				"other", prev.String())
		}
		prev = &mine[i]
		switch {
		case fn.Epoch > epoch:
			next, epoch = fn.Next(), fn.Epoch
		case fn.Epoch == epoch:
			next = max(next, fn.Next())
		}
	}
	// What a crash may have left un-synced in the directory is what this
	// run builds on: make it durable before anyone commits it.
	if err := fsys.SyncDir(w.topicDir); err != nil {
		return -1, 0, err
	}
	return next, epoch, nil
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

// List returns the published files of topic under dir, sorted by
// aggregator, partition and first offset, and the names in the topic's
// directory that are not published files of that topic. A missing
// directory is no error: it has no files.
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

// newTmpName returns a fresh temporary file path for a file starting at first.
func (w *writer) newTmpName(first int64) string {
	return path.Join(w.tmpDir, tmpName(w.topic, w.agg, w.part, first, rand.Uint64()))
}
