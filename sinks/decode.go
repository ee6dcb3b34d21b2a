package sinks

import (
	"errors"
	"fmt"

	"logship/logstore/batch"
)

// ErrCorruptFetch wraps every problem DecodeRecords finds in fetched bytes.
var ErrCorruptFetch = errors.New("sinks: corrupt fetch result")

// DecodeRecords decodes the batches of a FetchResult and calls fn for each
// record with Offset >= from, in order (a fetch may start mid-batch:
// the server returns the whole batch that holds from). Batches entirely
// below from are skipped without being decompressed.
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
// the call. dec is used by one goroutine at a time.
func DecodeRecords(dec *batch.Decoder, aggregator string, partition int, batches []byte, from int64, fn func(*Record) error) error {
	var rec Record
	rec.Aggregator, rec.Partition = aggregator, partition
	prevEnd := int64(-1)
	for pos := 0; pos < len(batches); {
		b := batches[pos:]
		if len(b) < batch.PrefixSize {
			return nil // partial tail
		}
		size, err := batch.CheckPrefix(b)
		if err != nil {
			return fmt.Errorf("%w: batch at byte %d: %w", ErrCorruptFetch, pos, err)
		}
		if size > len(b) {
			return nil // partial tail
		}
		b = b[:size]
		pos += size
		base := batch.BaseOffset(b)
		if prevEnd >= 0 && base < prevEnd {
			return fmt.Errorf("%w: batch at byte %d has base offset %d, below the previous batch's end %d",
				ErrCorruptFetch, pos-size, base, prevEnd)
		}
		h, err := batch.Parse(b)
		if err != nil {
			return fmt.Errorf("%w: batch at offset %d: %w", ErrCorruptFetch, base, err)
		}
		prevEnd = h.NextOffset()
		if h.NextOffset() <= from {
			continue
		}
		rec.Topic, rec.Host, rec.Source, rec.AppendTime = h.Topic, h.Agent, h.Path, h.AppendTime
		var fnErr error
		err = dec.Decode(b, &h, func(r batch.Record) error {
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
			return fmt.Errorf("%w: batch at offset %d: %w", ErrCorruptFetch, base, err)
		}
	}
	return nil
}
