package cassandra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetterVersion is the "v" of every dead-letter line (format in doc.go).
const DeadLetterVersion = 1

// DeadLetter is one line of a dead-letter file: a record Cassandra will
// not take, with where it comes from and why. Format: do not change
// without a new Version.
type DeadLetter struct {
	Version    int    `json:"v"`
	Time       string `json:"time"` // when it was dead-lettered, RFC 3339 UTC
	Sink       string `json:"sink"`
	Aggregator string `json:"aggregator"`
	Topic      string `json:"topic"`
	Partition  int    `json:"partition"`
	Offset     int64  `json:"offset"`
	TS         string `json:"ts"` // the record's time (the row's ts), RFC 3339 UTC, ms
	Host       string `json:"host"`
	Source     string `json:"source"`
	Kind       string `json:"kind"`  // too_large, rejected or retries_exhausted
	Error      string `json:"error"` // what Cassandra (or the sink) said
	// Line is the record when it is valid UTF-8; LineBase64 (standard
	// base64 in JSON) holds it otherwise. Exactly one is set.
	Line       *string `json:"line,omitempty"`
	LineBase64 []byte  `json:"line_base64,omitempty"`
}

// DeadLetterFile is the name of a sink's dead-letter file in its directory.
func DeadLetterFile(sink string) string { return sink + ".deadletter.jsonl" }

// deadLetters appends to a sink's dead-letter file. Its writes are
// serialised: the sink's goroutines call it concurrently.
type deadLetters struct {
	dir, sink string
	mu        sync.Mutex
	// unsynced are the directories that got a new entry (the file, or a
	// directory MkdirAll made) not yet fsynced. An entry stays until its
	// fsync succeeds: a try that created the file and then failed leaves
	// it to the next one, which finds the file there.
	unsynced map[string]bool
}

// write appends one line per row and makes them durable before it returns:
// create the directory (fsyncing the parents of what MkdirAll made), open
// (create), append, fsync, close, and fsync the directories that got new
// entries. The file is opened for each write, so that an operator may
// rename it away at any time; dead letters are rare. It returns the file's
// path.
func (d *deadLetters) write(rows []Row, k kind, cause error) (string, error) {
	var buf bytes.Buffer
	now := time.Now().UTC().Format(time.RFC3339Nano)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range rows {
		r := &rows[i]
		e := DeadLetter{
			Version: DeadLetterVersion, Time: now, Sink: d.sink,
			Aggregator: r.Aggregator, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
			TS: time.UnixMilli(r.TS).UTC().Format(time.RFC3339Nano), Host: r.Host, Source: r.Source,
			Kind: k.String(), Error: cause.Error(),
		}
		if r.Raw != nil {
			e.LineBase64 = r.Raw
		} else {
			line := string(r.Line)
			e.Line = &line
		}
		if err := enc.Encode(&e); err != nil { // Encode ends the line with '\n'
			return "", fmt.Errorf("BUG: cassandra: encode dead letter: %w", err)
		}
	}
	path := filepath.Join(d.dir, DeadLetterFile(d.sink))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unsynced == nil {
		d.unsynced = map[string]bool{}
	}
	// The directories MkdirAll is about to make: each is a new entry of
	// its parent.
	for dir := filepath.Clean(d.dir); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			break
		}
		d.unsynced[filepath.Dir(dir)] = true
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return path, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		d.unsynced[d.dir] = true // before it is created: a failure later keeps it
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return path, err
	}
	if err := appendDurably(f, buf.Bytes()); err != nil {
		f.Close()
		return path, fmt.Errorf("dead-letter file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return path, err
	}
	for dir := range d.unsynced {
		if err := syncDir(dir); err != nil {
			return path, err
		}
		delete(d.unsynced, dir)
	}
	return path, nil
}

// appendDurably appends b to f and fsyncs it. A crash may have left a torn
// last line (its records were not reported, so they come again): it is
// ended with '\n' first, so that every whole line stays parseable.
func appendDurably(f *os.File, b []byte) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if n := st.Size(); n > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, n-1); err != nil && err != io.EOF {
			return err
		}
		if last[0] != '\n' {
			b = append([]byte{'\n'}, b...)
		}
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
