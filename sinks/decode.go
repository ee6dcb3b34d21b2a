package sinks

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"logship/logstore/batch"
)

// ErrCorruptFetch wraps every problem a Decoder finds in fetched bytes.
var ErrCorruptFetch = errors.New("sinks: corrupt fetch result")

// decodeWorkers is how many goroutines of a Decoder decompress batches of
// one fetch at once, each into a buffer of its own.
const decodeWorkers = 2

// A Decoder decodes fetch results. Decompressing is most of a sink's CPU,
// so when a fetch holds several batches, Decode decompresses them on
// decodeWorkers goroutines at once (batch i on worker i mod decodeWorkers)
// while the caller's fn handles the records of each in turn: a partition
// that is the last one left busy (a catch-up, a replay) uses every core,
// not one.
//
// A Decoder is used by one goroutine at a time; the goroutines Decode
// starts end before it returns.
type Decoder struct {
	workers [decodeWorkers]decodeWorker
	jobs    []decodeJob // the batches of the fetch being decoded
}

// decodeWorker is one decompressing goroutine's state, kept across fetches.
type decodeWorker struct {
	dec *batch.Decoder
	buf []byte // where it decompresses: one batch at a time
}

// decodeJob is one batch to decode, checked.
type decodeJob struct {
	b []byte
	h batch.Header
}

// decoded is one batch's payload, decompressed: buf, or the fetched bytes
// when the batch is not compressed.
type decoded struct {
	raw []byte
	err error
}

// NewDecoder returns a Decoder. Close releases it.
func NewDecoder() (*Decoder, error) {
	d := &Decoder{}
	for i := range d.workers {
		dec, err := batch.NewDecoder()
		if err != nil {
			d.Close()
			return nil, err
		}
		d.workers[i].dec = dec
	}
	return d, nil
}

// Close releases the Decoder.
func (d *Decoder) Close() {
	for _, w := range d.workers {
		if w.dec != nil {
			w.dec.Close()
		}
	}
}

// Decode decodes the batches of a FetchResult and calls fn for each record
// with Offset >= from, in order (a fetch may start mid-batch: the server
// returns the whole batch that holds from). Batches entirely below from are
// skipped without being decompressed.
//
// Every batch is checked (both CRCs) before it is decoded. A partial batch
// at the end of batches, which a server may send when it cuts a result at
// its byte limit, is ignored: the caller fetches it again from the next
// offset. Any other damage is an error wrapping ErrCorruptFetch and a batch
// error (batch.ErrChecksum, ...), returned after the records of the good
// batches before it were delivered. An error returned by fn stops the
// decoding and is returned as it is.
//
// fn receives the same *Record each time; its Data is valid only during
// the call.
func (d *Decoder) Decode(aggregator string, partition int, batches []byte, from int64, fn func(*Record) error) error {
	jobs, scanErr := d.scan(batches, from)
	defer clear(jobs) // no reference to the fetch's bytes once it is done
	var rec Record
	rec.Aggregator, rec.Partition = aggregator, partition
	deliver := func(j *decodeJob, raw []byte) error {
		rec.Topic, rec.Host, rec.Source, rec.AppendTime = j.h.Topic, j.h.Agent, j.h.Path, j.h.AppendTime
		var fnErr error
		err := batch.EachRecord(raw, &j.h, func(r batch.Record) error {
			if r.Offset < from {
				return nil
			}
			rec.Offset, rec.Time, rec.Data = r.Offset, r.Time, r.Data
			fnErr = fn(&rec)
			return fnErr
		})
		if fnErr != nil {
			return fnErr
		}
		if err != nil {
			return fmt.Errorf("%w: batch at offset %d: %w", ErrCorruptFetch, j.h.BaseOffset, err)
		}
		return nil
	}
	var (
		raw []byte
		err error
	)
	if len(jobs) <= 1 || runtime.GOMAXPROCS(0) == 1 {
		// Nothing to overlap (or one processor to overlap it on): no
		// goroutine. A partition that reads one batch at a time is
		// following its tail: only worker 0 keeps a buffer then, so that
		// a sink of many quiet partitions holds one per partition.
		for i := range d.workers[1:] {
			d.workers[1+i].buf = nil
		}
		for i := range jobs {
			raw, err = d.workers[0].decompress(&jobs[i])
			if err == nil {
				err = deliver(&jobs[i], raw)
			}
			if err != nil {
				break
			}
		}
	} else {
		err = d.parallel(jobs, deliver)
	}
	if err != nil {
		return err
	}
	return scanErr
}

// parallel decompresses jobs on every worker and delivers them in order.
// Worker w decompresses jobs w, w+decodeWorkers, ... into its one buffer:
// it starts the next only once deliver is done with the one before (a
// token on free[w]).
func (d *Decoder) parallel(jobs []decodeJob, deliver func(*decodeJob, []byte) error) error {
	var (
		out  [decodeWorkers]chan decoded
		free [decodeWorkers]chan struct{}
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for w := range d.workers {
		out[w], free[w] = make(chan decoded, 1), make(chan struct{}, 1)
		free[w] <- struct{}{}
		wg.Go(func() {
			for i := w; i < len(jobs); i += decodeWorkers {
				select {
				case <-free[w]:
				case <-stop:
					return
				}
				raw, err := d.workers[w].decompress(&jobs[i])
				out[w] <- decoded{raw: raw, err: err} // room: the token said so
				if err != nil {
					return
				}
			}
		})
	}
	defer func() { // also when fn panics: no worker outlives Decode
		close(stop)
		wg.Wait()
	}()
	var err error
	for i := range jobs {
		w := i % decodeWorkers
		b := <-out[w]
		if err = b.err; err == nil {
			err = deliver(&jobs[i], b.raw)
		}
		if err != nil {
			break
		}
		free[w] <- struct{}{}
	}
	return err
}

// decompress decompresses one job into the worker's buffer.
func (w *decodeWorker) decompress(j *decodeJob) ([]byte, error) {
	raw, err := w.dec.Decompress(w.buf, j.b, &j.h)
	if err != nil {
		return nil, fmt.Errorf("%w: batch at offset %d: %w", ErrCorruptFetch, j.h.BaseOffset, err)
	}
	if j.h.Compression != batch.None {
		w.buf = raw[:0]
	}
	return raw, nil
}

// scan checks the batches in order and returns those that hold a record at
// or after from, up to the first damage, and that damage.
func (d *Decoder) scan(batches []byte, from int64) ([]decodeJob, error) {
	jobs := d.jobs[:0]
	defer func() { d.jobs = jobs }()
	prevEnd := int64(-1)
	for pos := 0; pos < len(batches); {
		b := batches[pos:]
		if len(b) < batch.PrefixSize {
			return jobs, nil // partial tail
		}
		size, err := batch.CheckPrefix(b)
		if err != nil {
			return jobs, fmt.Errorf("%w: batch at byte %d: %w", ErrCorruptFetch, pos, err)
		}
		if size > len(b) {
			return jobs, nil // partial tail
		}
		b = b[:size]
		base := batch.BaseOffset(b)
		if prevEnd >= 0 && base < prevEnd {
			return jobs, fmt.Errorf("%w: batch at byte %d has base offset %d, below the previous batch's end %d",
				ErrCorruptFetch, pos, base, prevEnd)
		}
		h, err := batch.Parse(b)
		if err != nil {
			return jobs, fmt.Errorf("%w: batch at offset %d: %w", ErrCorruptFetch, base, err)
		}
		pos += size
		prevEnd = h.NextOffset()
		if h.NextOffset() > from {
			jobs = append(jobs, decodeJob{b: b, h: h})
		}
	}
	return jobs, nil
}
