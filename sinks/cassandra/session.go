package cassandra

import (
	"context"
)

// Key is a row's partition key: every row of one batch has the same.
type Key struct {
	Topic  string
	Host   string
	Bucket int64 // start of the time bucket, unix ms
}

// Row is one record as the row the sink writes (see the schema in doc.go).
type Row struct {
	Key
	TS         int64 // the record's time, unix ms
	Aggregator string
	Partition  int
	Offset     int64
	Source     string
	// Line is the record, valid UTF-8. Raw is the record as it came when
	// it was not valid UTF-8 (then Line has U+FFFD in place of the bad
	// bytes), nil otherwise: nothing is written to the raw column then.
	Line []byte
	Raw  []byte
}

// Session is all the sink needs of Cassandra, so that tests can use a fake
// that fails, times out and rejects. Its methods are called concurrently.
type Session interface {
	// WriteBatch writes rows, all with the same Key, as one unlogged
	// batch with the sink's consistency and TTL. It returns the driver's
	// error as it is (classify sorts it).
	WriteBatch(ctx context.Context, rows []Row) error
	// Probe reads one row of the partition k without writing: it fails
	// the way a write fails when the table itself cannot be used (dropped,
	// altered, permissions), and succeeds when a write failed for its
	// records alone.
	Probe(ctx context.Context, k Key) error
	// Close releases the session.
	Close()
}

// NewSessionFunc opens a Session. The Sink calls it from Open, once, and
// again after a failure.
type NewSessionFunc func(ctx context.Context) (Session, error)
