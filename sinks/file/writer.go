package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"logship/sinks"
)

// clockBytes is how many bytes a writer writes between two readings of
// the clock for its idle time (Write).
const clockBytes = 1 << 20

// errClosed is returned by a writer used after Close.
var errClosed = errors.New("file: writer closed")

// encoderHeld bounds the uncompressed bytes a compressor may hold before
// it emits them (a zstd block is 128 KiB, a deflate window 32 KiB plus its
// lookahead): RollSize is checked against the compressed bytes out plus
// this much.
const encoderHeld = 256 << 10

// writer is the PartitionWriter of one partition. One goroutine uses it.
//
// A file goes through these steps, and resume (in Open) undoes or
// completes each of them after a crash (doc.go):
//
//	create   Dir/_tmp/<prefix><first>.<random>.tmp
//	write    records, through the compressor if any and a buffer of BufferSize
//	flush    the compressor's end and the buffer
//	sync     fsync the file (HDFS: flush to the datanodes)
//	close    (HDFS: complete the file; its lease ends)
//	mkdir    the final directory, from the template and the first record's time
//	check    the final name does not exist: never overwrite a published file
//	intent   the marker, rewritten with the final name as pending
//	rename   to Dir/<dir>/<topic>+<agg>+<partition>+<first>+<last>[+e<epoch>]<suffix>
//	syncdir  fsync the final directory: the rename is durable
//	marker   the marker, rewritten with the file as the newest; only now is
//	         the file's next offset reported (Tick, Close) and committed
//
// The steps from mkdir on touch only names, so they are retried in place
// (Options.Retries); a failure before is final for the file: it is thrown
// away and its records are fetched and written again.
type writer struct {
	s      *Sink
	log    *slog.Logger
	topic  string
	agg    string
	part   int
	prefix string
	tmpDir string
	marker string // path of the partition's marker
	epoch  uint64 // the reset epoch the files it publishes are named with
	// state is where the published files stand: the marker as last
	// written or read (never with Pending set).
	state   marker
	lastDir string // the final directory last made sure of

	// The open file, if any: f and bw are nil between files. tmp stays set
	// until the file is renamed or removed.
	f       File
	bw      *bufio.Writer
	cw      countWriter // counts the bytes into bw
	enc     encoder     // nil without compression
	dst     io.Writer   // where records go: enc, or &cw
	tmp     string
	dir     string    // its final directory, relative to Dir
	first   int64     // offset of the file's first record
	size    int64     // uncompressed bytes written to the file
	records int64     // records written to the file
	start   time.Time // when the file's first record arrived
	at      time.Time // when its last record arrived, give or take clockBytes (Write)
	fresh   bool      // at was read since the last Tick
	clockAt int64     // size at which Write reads the clock again

	line []byte // the json line being built

	last int64 // offset of the last record written by this writer, -1 before any
	pub  int64 // next offset published and not yet reported, -1 if none
	err  error // sticky: the writer failed (or was closed); Close abandons the file
}

var newline = []byte{'\n'}

// Write implements sinks.PartitionWriter.
func (w *writer) Write(ctx context.Context, r *sinks.Record) error {
	if w.err != nil {
		return w.err
	}
	if r.Offset <= w.last {
		return fmt.Errorf("BUG: file: offset %d written after %d", r.Offset, w.last)
	}
	json := w.s.opts.Format == FormatJSON
	var n int64
	if json {
		w.line = appendJSON(w.line[:0], r)
		n = int64(len(w.line))
	} else {
		n = int64(len(r.Data)) + 1
	}
	if w.f != nil && w.wouldPass(n) {
		if err := w.publish(ctx); err != nil {
			return err
		}
	}
	if w.f == nil {
		now := time.Now()
		if err := w.create(ctx, r, now); err != nil {
			return err
		}
		w.at, w.fresh, w.clockAt = now, true, clockBytes
	} else if !w.fresh || w.size >= w.clockAt {
		// The clock is read at the first record after a Tick and then
		// every clockBytes, not per record (it costs as much as the rest
		// of a small record's write). So at is never older than the last
		// clockBytes written: a file that gets records through a long
		// fetch (a catch-up writes a fetch of 25 MB or more between two
		// Ticks) is not idle at the Tick after it, however short
		// IdleTimeout. An idle file is published at most as early as it
		// takes to write clockBytes.
		w.at, w.fresh = time.Now(), true
		w.clockAt = w.size + clockBytes
	}
	var err error
	if json {
		_, err = w.dst.Write(w.line)
	} else if _, err = w.dst.Write(r.Data); err == nil {
		// bufio copies large records straight through: no extra allocation.
		_, err = w.dst.Write(newline)
	}
	if err != nil {
		return w.fail("write", err)
	}
	w.size += n
	w.records++
	w.last = r.Offset
	return nil
}

// wouldPass reports whether n more bytes would take the open file past
// RollSize. With compression, the compressed size is bounded from above by
// what the compressor emitted plus what it may still hold.
func (w *writer) wouldPass(n int64) bool {
	if w.enc == nil {
		return w.size+n > w.s.opts.RollSize
	}
	const trailer = 64 // gzip and zstd ends, block headers
	held := min(w.size, encoderHeld)
	return w.cw.n+held+n+n/64+trailer > w.s.opts.RollSize
}

// create starts a new temporary file whose first record is r.
func (w *writer) create(ctx context.Context, r *sinks.Record, now time.Time) error {
	w.tmp = w.newTmpName(r.Offset)
	f, err := w.s.fsFor(ctx).Create(w.tmp)
	if err != nil {
		w.tmp = ""
		return w.fail("create", err)
	}
	w.s.stats.open.Add(1)
	w.f = f
	w.bw = w.s.bufs.Get().(*bufio.Writer)
	w.bw.Reset(f)
	w.cw = countWriter{w: w.bw}
	w.dst = &w.cw
	if w.s.encs != nil {
		w.enc = w.s.encs.get(&w.cw)
		w.dst = w.enc
	}
	w.dir = w.s.tmpl.Render(w.topic, w.agg, w.part, recordTime(r, now))
	w.first, w.size, w.records, w.start = r.Offset, 0, 0, now
	return nil
}

// recordTime is the time a record gives the path template: when the agent
// read it, else when the aggregator stored it, else now.
func recordTime(r *sinks.Record, now time.Time) time.Time {
	switch {
	case r.Time > 0:
		return time.Unix(0, r.Time)
	case r.AppendTime > 0:
		return time.UnixMilli(r.AppendTime)
	}
	return now
}

// Tick implements sinks.PartitionWriter: it publishes the open file once
// it is RollInterval old or IdleTimeout idle.
func (w *writer) Tick(ctx context.Context, now time.Time) (int64, error) {
	if w.err != nil {
		return -1, w.err
	}
	w.fresh = false
	if w.f != nil && (now.Sub(w.start) >= w.s.opts.RollInterval || now.Sub(w.at) >= w.s.opts.IdleTimeout) {
		if err := w.publish(ctx); err != nil {
			return -1, err
		}
	}
	return w.report(), nil
}

// NextTick implements sinks.TickDeadliner: the open file is due to be
// published RollInterval after its first record or IdleTimeout after its
// last.
func (w *writer) NextTick() (time.Time, bool) {
	if w.err != nil || w.f == nil {
		return time.Time{}, false
	}
	t := w.start.Add(w.s.opts.RollInterval)
	if idle := w.at.Add(w.s.opts.IdleTimeout); idle.Before(t) {
		t = idle
	}
	return t, true
}

// Close implements sinks.PartitionWriter: it publishes the open file, or
// abandons it when the writer failed earlier (its records are fetched and
// written again by the next writer). ctx bounds it: the file's operations
// get its deadline, the namespace operations its end (through a ContextFS),
// and an abandoned file is left for the next Open once ctx is done.
func (w *writer) Close(ctx context.Context) (int64, error) {
	if w.err == errClosed {
		return -1, errClosed
	}
	var err error
	if w.f != nil {
		// Bounds the file's last operations, whether it is published or
		// abandoned (an HDFS close waits for the NameNode).
		if dl, ok := ctx.Deadline(); ok {
			if d, ok := w.f.(Deadliner); ok {
				d.SetDeadline(dl)
			}
		}
	}
	if w.err == nil && w.f != nil {
		err = w.publish(ctx)
	}
	if w.err != nil {
		w.abandon(ctx)
	}
	w.err = errClosed
	w.s.release(w.prefix)
	return w.report(), err
}

// report returns the published offset not yet reported, or -1.
func (w *writer) report() int64 {
	off := w.pub
	w.pub = -1
	return off
}

// publish makes the open file durable and publishes it; see the steps on
// writer. On error the writer is failed: Close abandons the file.
func (w *writer) publish(ctx context.Context) error {
	root, fsys := w.s.opts.Dir, w.s.fsFor(ctx)
	if w.enc != nil {
		if err := w.enc.Close(); err != nil {
			return w.fail("flush", err)
		}
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail("flush", err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail("sync", err)
	}
	err := w.f.Close()
	w.f = nil
	w.s.stats.open.Add(-1)
	if err != nil {
		return w.fail("close", err)
	}
	// The file is complete. From here on only names change: each step is
	// retried in place, and a failure leaves the marker saying what a
	// restart must check.
	name := FileName{Topic: w.topic, Aggregator: w.agg, Partition: w.part, First: w.first, Last: w.last, Epoch: w.epoch, Ext: extFor(w.s.suffix)}
	rel := path.Join(w.dir, name.String())
	final := path.Join(root, rel)
	finalDir := path.Dir(final)
	if err := w.retry(ctx, "mkdir", func() error { return w.ensureDir(fsys, finalDir) }); err != nil {
		return w.fail("mkdir", err)
	}
	if err := w.retry(ctx, "publish", func() error {
		_, err := fsys.Stat(final)
		switch {
		case err == nil:
			return fmt.Errorf("%s %w", final, errExists)
		case errors.Is(err, fs.ErrNotExist):
			return nil
		}
		return err
	}); err != nil {
		return w.fail("publish", err)
	}
	intent := w.state
	intent.Topic, intent.Aggregator, intent.Partition = w.topic, w.agg, w.part
	intent.Pending = &pendingFile{Tmp: path.Join(TmpDir, path.Base(w.tmp)), File: rel, Next: w.last + 1}
	if err := w.retry(ctx, "marker", func() error { return w.writeMarker(fsys, &intent) }); err != nil {
		return w.fail("marker", err)
	}
	if err := w.retry(ctx, "rename", func() error { return w.rename(fsys, final) }); err != nil {
		return w.fail("rename", err)
	}
	w.tmp = ""
	if err := w.retry(ctx, "syncdir", func() error { return fsys.SyncDir(finalDir) }); err != nil {
		// The file is visible but perhaps not durable: it is not reported.
		// The next Open makes its directory durable before resuming.
		return w.fail("syncdir", err)
	}
	done := marker{Topic: w.topic, Aggregator: w.agg, Partition: w.part, Epoch: w.epoch, Next: w.last + 1, File: rel}
	if err := w.retry(ctx, "marker", func() error { return w.writeMarker(fsys, &done) }); err != nil {
		// Published, but the marker still names it as pending: the next
		// Open finds it and reports it. Not reported now.
		return w.fail("marker", err)
	}
	w.state = done
	w.s.stats.files.Add(1)
	w.s.stats.records.Add(uint64(w.records))
	w.s.stats.bytes.Add(uint64(w.cw.n))
	w.putBuffers()
	w.pub = w.last + 1
	w.log.Debug("published", "file", final, "offset", w.first, "records_to", w.last, "bytes", w.cw.n)
	return nil
}

// rename moves the temporary file to final. A retried rename whose first
// try went through (the reply was lost) finds the file already there.
func (w *writer) rename(fsys FS, final string) error {
	err := fsys.Rename(w.tmp, final)
	if err == nil {
		return nil
	}
	if _, serr := fsys.Stat(w.tmp); errors.Is(serr, fs.ErrNotExist) {
		if _, ferr := fsys.Stat(final); ferr == nil {
			return nil // done by the try whose reply was lost
		}
	}
	return err
}

// ensureDir makes dir (a final directory) exist and durable: on a local
// filesystem, a new directory's entry lives in its parent, which is
// synced up to the sink's root. The parents are synced the first time a
// writer uses dir even when dir exists: an earlier run that crashed may
// have made it and died before its syncs, and a file renamed into a
// directory whose own entry is lost to a power cut is lost with it. That
// costs a few directory syncs per directory and writer, once (HDFS:
// none, SyncDir is free there).
func (w *writer) ensureDir(fsys FS, dir string) error {
	if dir == w.lastDir {
		return nil
	}
	if _, err := fsys.Stat(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := fsys.MkdirAll(dir); err != nil {
			return err
		}
	}
	root := path.Clean(w.s.opts.Dir)
	for d := dir; d != root && d != "/" && d != "."; d = path.Dir(d) {
		if err := fsys.SyncDir(path.Dir(d)); err != nil {
			return err
		}
	}
	w.lastDir = dir
	return nil
}

// fail makes the writer unusable and returns the error, which says what
// failed on which file.
func (w *writer) fail(step string, err error) error {
	f := w.tmp
	if f == "" {
		f = path.Join(w.s.opts.Dir, w.dir)
	}
	w.s.stats.failed(step)
	w.err = fmt.Errorf("file: %s %s: %w", step, f, err)
	return w.err
}

// abandon closes and deletes the open temporary file, if any. Its records
// were never reported, so they are fetched and written again. Once ctx is
// done the delete is skipped, so that Close keeps to its bound: the next
// Open of the partition deletes the file anyway.
func (w *writer) abandon(ctx context.Context) {
	if w.f != nil {
		w.f.Close()
		w.f = nil
		w.s.stats.open.Add(-1)
	}
	if w.tmp != "" {
		w.s.stats.abandoned.Add(1)
		switch err := ctx.Err(); {
		case err != nil:
			w.log.Warn("abandoned temporary file left for the next open to delete: no time left", "file", w.tmp, "err", err)
		default:
			if err := w.s.fsFor(ctx).Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
				// Harmless: the next Open of the partition deletes it.
				w.log.Warn("removing abandoned temporary file", "file", w.tmp, "err", err)
			} else {
				w.log.Info("abandoned temporary file after an error; its records are written again", "file", w.tmp)
			}
		}
		w.tmp = ""
	}
	w.putBuffers()
}

func (w *writer) putBuffers() {
	if w.enc != nil {
		w.s.encs.put(w.enc)
		w.enc = nil
	}
	if w.bw != nil {
		w.bw.Reset(nil)
		w.s.bufs.Put(w.bw)
		w.bw = nil
	}
	w.dst = nil
}
