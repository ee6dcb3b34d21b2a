package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"sync"
	"time"

	"logship/logstore/batch"
	"logship/sinks"
)

// Defaults for Options.
const (
	DefaultPath         = "{topic}"
	DefaultRollSize     = 128 << 20 // the HDFS block size
	DefaultRollInterval = 15 * time.Minute
	DefaultIdleTimeout  = time.Minute
	DefaultBufferSize   = 1 << 20
	DefaultRetryBackoff = 200 * time.Millisecond
)

// maxRetryBackoff caps the in-place retries' backoff.
const maxRetryBackoff = 5 * time.Second

// Options configure a Sink.
type Options struct {
	// Dir is the root directory: published files go to Dir/<Path>/, files
	// being written to Dir/_tmp/, the partitions' markers to Dir/_state/.
	Dir string
	// Path is the template of the directory, relative to Dir, that a file
	// is published in (doc.go): "{topic}" by default; e.g.
	// "{topic}/{yyyy}/{mm}/{dd}/{hh}" with the time of the file's first
	// record.
	Path string
	// RollSize: a file is published before it would grow past this many
	// bytes (a single larger record makes a file of its own). With
	// compression, the compressed size, estimated from above. Default
	// 128 MiB.
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
	// Format of the records in a file: "lines" (default) or "json".
	Format string
	// Compression of the files: "none" (default), "gzip" or "zstd".
	Compression string
	// Retries is how many times a namespace operation of a publish
	// (mkdir, rename, marker) is tried again in place, with a backoff
	// from RetryBackoff, before the writer fails (then the file is thrown
	// away and its records are written again). Default 0: a local
	// filesystem's errors do not pass by themselves; a remote store's
	// (an HDFS NameNode failing over) do.
	Retries      int
	RetryBackoff time.Duration // default 200ms
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
	// FS is where files are written; nil is the local filesystem (OSFS).
	FS FS
	// Lazy: New does not touch FS (a remote store may be down when the
	// process starts); the first Open creates the directories.
	Lazy bool
}

// Sink writes records into files and publishes each file by rename when
// it rolls. It implements sinks.Sink; Open is safe for concurrent use.
type Sink struct {
	opts   Options
	fs     FS
	tmpl   Template
	suffix string
	log    *slog.Logger
	bufs   sync.Pool // *bufio.Writer of BufferSize
	encs   *encoders // nil without compression
	stats  stats

	mu     sync.Mutex
	open   map[string]bool // partitionPrefix of partitions with an open writer
	warned map[string]bool // paths already warned about
}

var _ sinks.Sink = (*Sink)(nil)

// New returns a Sink. It creates Dir/_tmp and Dir/_state unless Lazy.
func New(opts Options) (*Sink, error) {
	if opts.Dir == "" {
		return nil, errors.New("file: no directory")
	}
	if opts.RollSize < 0 || opts.RollInterval < 0 || opts.IdleTimeout < 0 || opts.BufferSize < 0 || opts.RetryBackoff < 0 || opts.Retries < 0 {
		return nil, errors.New("file: negative roll size, interval, idle timeout, buffer size or retries")
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.Path == "." {
		opts.Path = ""
	}
	tmpl, err := ParseTemplate(opts.Path)
	if err != nil {
		return nil, err
	}
	if opts.Format == "" {
		opts.Format = FormatLines
	}
	if opts.Compression == "" {
		opts.Compression = CompressionNone
	}
	if err := checkFormat(opts.Format, opts.Compression); err != nil {
		return nil, err
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
	if opts.RetryBackoff == 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	s := &Sink{
		opts: opts, fs: opts.FS, tmpl: tmpl, suffix: suffixFor(opts.Format, opts.Compression),
		log: opts.Logger, encs: newEncoders(opts.Compression),
		open: map[string]bool{}, warned: map[string]bool{},
	}
	s.bufs.New = func() any { return bufio.NewWriterSize(nil, opts.BufferSize) }
	if !opts.Lazy {
		for _, d := range []string{TmpDir, StateDir} {
			if err := s.fs.MkdirAll(path.Join(opts.Dir, d)); err != nil {
				return nil, fmt.Errorf("file: %w", err)
			}
		}
	}
	return s, nil
}

// Close implements sinks.Sink. The writers are closed by their owner; an
// FS that is an io.Closer (a remote client) is closed here.
func (s *Sink) Close() error {
	if c, ok := s.fs.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Open implements sinks.Sink. It applies the recovery rules of doc.go: it
// deletes the partition's temporary files (a crash left them; their
// records are written again), reads the partition's marker, completes or
// undoes the publish it names as pending, and returns the offset after the
// partition's newest published file of its highest epoch, or -1 when it
// has none. When p.Epoch is higher than that epoch, an operator reset the
// offset: it returns p.Committed, and the files it then writes carry
// p.Epoch in their names.
func (s *Sink) Open(ctx context.Context, p sinks.Partition) (sinks.PartitionWriter, int64, error) {
	aggregator, topic, partition := p.Aggregator, p.Topic, p.Partition
	if err := batch.CheckName("aggregator id", aggregator); err != nil {
		return nil, -1, fmt.Errorf("file: %w", err)
	}
	if err := batch.CheckName("topic", topic); err != nil {
		return nil, -1, fmt.Errorf("file: %w", err)
	}
	if err := s.tmpl.checkReserved(topic, aggregator, partition); err != nil {
		return nil, -1, fmt.Errorf("file: topic %q, aggregator %q: directory %w", topic, aggregator, err)
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
		tmpDir: path.Join(s.opts.Dir, TmpDir),
		marker: path.Join(s.opts.Dir, StateDir, markerName(topic, aggregator, partition)),
		last:   -1, pub: -1,
		log: s.log.With("aggregator", aggregator, "topic", topic, "partition", partition),
	}
	st, err := w.resume(ctx)
	if err != nil {
		s.stats.failed("recover")
		s.release(prefix)
		return nil, -1, fmt.Errorf("file: open %s/%s/%d: %w", aggregator, topic, partition, err)
	}
	w.state = st
	w.epoch = st.Epoch
	next := st.Next
	if st.File == "" {
		next = -1
	}
	if p.Epoch > st.Epoch {
		w.epoch, next = p.Epoch, p.Committed
		w.log.Info("replaying from an operator's reset: new files carry the epoch in their names", "offset", p.Committed, "epoch", p.Epoch)
	}
	return w, next, nil
}

// fsFor returns the FS to do the operations of a call bounded by ctx
// through: s.fs itself unless it is a ContextFS and ctx can end.
func (s *Sink) fsFor(ctx context.Context) FS {
	if c, ok := s.fs.(ContextFS); ok && ctx.Done() != nil {
		return c.WithContext(ctx)
	}
	return s.fs
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

// newTmpName returns a fresh temporary file path for a file starting at first.
func (w *writer) newTmpName(first int64) string {
	return path.Join(w.tmpDir, tmpName(w.topic, w.agg, w.part, first, rand.Uint64()))
}
