package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"logship/sinks"
)

// errClosed is returned by a writer used after Close.
var errClosed = errors.New("file: writer closed")

// writer is the PartitionWriter of one partition. One goroutine uses it.
//
// A file goes through these steps, and resume (in Open) undoes or
// completes each of them after a crash (doc.go):
//
//	create  Dir/_tmp/<prefix><first>.<random>.tmp
//	write   records, through a buffer of BufferSize
//	flush   the buffer
//	sync    fsync the file: its bytes are durable
//	close
//	check   the final name does not exist: never overwrite a published file
//	rename  to Dir/<topic>/<topic>+<agg>+<partition>+<first>+<last>.log
//	syncdir fsync Dir/<topic>: the rename is durable; only now is the
//	        file's next offset reported (Tick, Close) and committed
type writer struct {
	s        *Sink
	log      *slog.Logger
	topic    string
	agg      string
	part     int
	prefix   string
	topicDir string
	tmpDir   string
	epoch    uint64 // the reset epoch the files it publishes are named with

	// The open file, if any: f and bw are nil between files. tmp stays set
	// until the file is renamed or removed.
	f     File
	bw    *bufio.Writer
	tmp   string
	first int64     // offset of the file's first record
	size  int64     // bytes written to the file
	start time.Time // when the file's first record arrived
	at    time.Time // when its last record arrived

	last int64 // offset of the last record written by this writer, -1 before any
	pub  int64 // next offset published and not yet reported, -1 if none
	err  error // sticky: the writer failed (or was closed); Close abandons the file
}

// Write implements sinks.PartitionWriter.
func (w *writer) Write(ctx context.Context, r *sinks.Record) error {
	if w.err != nil {
		return w.err
	}
	if r.Offset <= w.last {
		return fmt.Errorf("BUG: file: offset %d written after %d", r.Offset, w.last)
	}
	n := int64(len(r.Data)) + 1
	if w.f != nil && w.size+n > w.s.opts.RollSize {
		if err := w.publish(); err != nil {
			return err
		}
	}
	now := time.Now()
	if w.f == nil {
		if err := w.create(r.Offset, now); err != nil {
			return err
		}
	}
	// bufio copies large records straight through: no extra allocation.
	if _, err := w.bw.Write(r.Data); err != nil {
		return w.fail("write", err)
	}
	if err := w.bw.WriteByte('\n'); err != nil {
		return w.fail("write", err)
	}
	w.size += n
	w.last = r.Offset
	w.at = now
	return nil
}

// create starts a new temporary file whose first record is at first.
func (w *writer) create(first int64, now time.Time) error {
	w.tmp = w.newTmpName(first)
	f, err := w.s.fs.Create(w.tmp)
	if err != nil {
		w.tmp = ""
		return w.fail("create", err)
	}
	w.f = f
	w.bw = w.s.bufs.Get().(*bufio.Writer)
	w.bw.Reset(f)
	w.first, w.size, w.start = first, 0, now
	return nil
}

// Tick implements sinks.PartitionWriter: it publishes the open file once
// it is RollInterval old or IdleTimeout idle.
func (w *writer) Tick(ctx context.Context, now time.Time) (int64, error) {
	if w.err != nil {
		return -1, w.err
	}
	if w.f != nil && (now.Sub(w.start) >= w.s.opts.RollInterval || now.Sub(w.at) >= w.s.opts.IdleTimeout) {
		if err := w.publish(); err != nil {
			return -1, err
		}
	}
	return w.report(), nil
}

// Close implements sinks.PartitionWriter: it publishes the open file, or
// abandons it when the writer failed earlier (its records are fetched and
// written again by the next writer).
func (w *writer) Close(ctx context.Context) (int64, error) {
	if w.err == errClosed {
		return -1, errClosed
	}
	var err error
	if w.err == nil && w.f != nil {
		err = w.publish()
	}
	if w.err != nil {
		w.abandon()
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

// publish makes the open file durable and publishes it by rename; see the
// steps on writer. On error the writer is failed: Close abandons the file.
func (w *writer) publish() error {
	name := FileName{Topic: w.topic, Aggregator: w.agg, Partition: w.part, First: w.first, Last: w.last, Epoch: w.epoch}
	final := path.Join(w.topicDir, name.String())
	if err := w.bw.Flush(); err != nil {
		return w.fail("flush", err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail("sync", err)
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return w.fail("close", err)
	}
	if _, err := w.s.fs.Stat(final); err == nil {
		return w.fail("publish", fmt.Errorf("%s exists already: not overwriting a published file", final))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return w.fail("publish", err)
	}
	if err := w.s.fs.Rename(w.tmp, final); err != nil {
		return w.fail("rename", err)
	}
	w.tmp = ""
	if err := w.s.fs.SyncDir(w.topicDir); err != nil {
		// The file is visible but perhaps not durable: it is not reported.
		// The next Open makes the directory durable before resuming.
		return w.fail("sync directory", err)
	}
	w.putBuffer()
	w.pub = w.last + 1
	w.log.Debug("published", "file", final, "offset", w.first, "records_to", w.last, "bytes", w.size)
	return nil
}

// fail makes the writer unusable and returns the error, which says what
// failed on which file.
func (w *writer) fail(step string, err error) error {
	f := w.tmp
	if f == "" {
		f = w.topicDir
	}
	w.err = fmt.Errorf("file: %s %s: %w", step, f, err)
	return w.err
}

// abandon closes and deletes the open temporary file, if any. Its records
// were never reported, so they are fetched and written again.
func (w *writer) abandon() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.tmp != "" {
		if err := w.s.fs.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Harmless: the next Open of the partition deletes it.
			w.log.Warn("removing abandoned temporary file", "file", w.tmp, "err", err)
		} else {
			w.log.Info("abandoned temporary file after an error; its records are written again", "file", w.tmp)
		}
		w.tmp = ""
	}
	w.putBuffer()
}

func (w *writer) putBuffer() {
	if w.bw != nil {
		w.bw.Reset(nil)
		w.s.bufs.Put(w.bw)
		w.bw = nil
	}
}
