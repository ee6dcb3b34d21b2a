package file

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"logship/sinks"
)

// Record formats and compressions (Options.Format, Options.Compression).
const (
	FormatLines = "lines" // the record's data and '\n'
	FormatJSON  = "json"  // one JSON object per line, with the record's metadata

	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// encoder is a compressor that writes into a file's buffer.
type encoder interface {
	io.Writer
	// Close writes the compressed stream's end; it does not close the
	// underlying writer.
	Close() error
	Reset(w io.Writer)
}

// zstdEncoder adapts *zstd.Encoder, whose Reset has no error to report
// with a nil-free writer.
type zstdEncoder struct{ *zstd.Encoder }

func (e zstdEncoder) Reset(w io.Writer) { e.Encoder.Reset(w) }

// encoders pools the compressors of one compression: a zstd encoder holds
// MiBs of tables, a gzip one hundreds of KiB, so each open file borrows
// one and returns it when the file is published or abandoned.
type encoders struct {
	pool sync.Pool
}

func newEncoders(compression string) *encoders {
	e := &encoders{}
	switch compression {
	case CompressionGzip:
		e.pool.New = func() any { return gzip.NewWriter(nil) }
	case CompressionZstd:
		e.pool.New = func() any {
			// Concurrency 1: the encoder compresses in the caller's
			// goroutine and starts none of its own (one goroutine per
			// partition already; STYLE 10).
			z, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
			if err != nil {
				panic("BUG: zstd writer options: " + err.Error())
			}
			return zstdEncoder{z}
		}
	default:
		return nil
	}
	return e
}

func (e *encoders) get(w io.Writer) encoder {
	enc := e.pool.Get().(encoder)
	enc.Reset(w)
	return enc
}

func (e *encoders) put(enc encoder) {
	enc.Reset(io.Discard)
	e.pool.Put(enc)
}

// countWriter counts the bytes an encoder emits into a file's buffer.
type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// appendJSON appends r as one line of the json format (doc.go), newline
// included.
func appendJSON(b []byte, r *sinks.Record) []byte {
	b = append(b, `{"aggregator":`...)
	b = appendJSONString(b, r.Aggregator)
	b = append(b, `,"topic":`...)
	b = appendJSONString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"time":"`...)
	b = time.Unix(0, r.Time).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","append_time":"`...)
	b = time.UnixMilli(r.AppendTime).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, r.Source)
	b = append(b, `,"data":`...)
	b = appendJSONString(b, r.Data)
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// plain marks the bytes a JSON string holds as they are: printable ASCII
// but '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string. Bytes that are not valid
// UTF-8 become U+FFFD, as encoding/json does; '<', '>' and '&' are kept
// as they are (the output is not HTML).
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// The common case: a run of printable ASCII, copied as it is.
		for i < len(s) && plain[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// At most 4 bytes: converted on the stack, no allocation.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// checkFormat checks Options.Format and Options.Compression.
func checkFormat(format, compression string) error {
	switch format {
	case FormatLines, FormatJSON:
	default:
		return fmt.Errorf("file: format %q: want %q or %q", format, FormatLines, FormatJSON)
	}
	switch compression {
	case CompressionNone, CompressionGzip, CompressionZstd:
	default:
		return fmt.Errorf("file: compression %q: want %q, %q or %q", compression, CompressionNone, CompressionGzip, CompressionZstd)
	}
	return nil
}
