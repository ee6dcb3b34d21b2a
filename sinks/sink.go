package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"logship/logstore/batch"
)

// Record is one record delivered to a sink, in offset order per partition.
type Record struct {
	Aggregator string // id of the aggregator that stores it
	Topic      string
	Partition  int
	Offset     int64
	Time       int64  // unix ns, as read by the agent
	AppendTime int64  // unix ms, when the aggregator stored it
	Host       string // agent id
	Source     string // source path
	// Data is the record without its trailing newline. It aliases a
	// decode buffer: valid only during the call that delivers it.
	Data []byte
}

// Partition names the partition a writer is opened for, and what the
// aggregator holds of the sink's position in it.
type Partition struct {
	Aggregator string
	Topic      string
	Partition  int
	// Committed is the sink's committed offset at the aggregator, -1 when
	// it has none. Epoch counts the operator's resets of that offset
	// (logship offsets reset): 0 until the first.
	Committed int64
	Epoch     uint64
}

// A Sink writes records. The runtime calls Open from one goroutine per
// (aggregator, topic, partition), so Open must be safe for concurrent use;
// each PartitionWriter it returns is used by that one goroutine only.
type Sink interface {
	// Open is called once per (aggregator, topic, partition) before any
	// record, again after the writer failed and was closed, and again when
	// an operator reset the offset (a higher Epoch). It returns the
	// partition's writer and the next offset the sink itself knows it has
	// durably written, or -1 if it knows nothing (then the runtime uses
	// p.Committed, or Options.Start).
	//
	// A sink that keeps its own position (in file names, say) keeps the
	// epoch with it. When p.Epoch is higher than the epoch of what it
	// holds, the operator asked for a replay: it must return p.Committed
	// (or -1) and write the replayed records so that they do not collide
	// with what it wrote before. A sink whose writes are idempotent
	// (Cassandra) can always return -1.
	Open(ctx context.Context, p Partition) (PartitionWriter, int64, error)
	// Close releases what the sink holds. Run does not call it: the caller
	// that made the sink closes it after Run returned.
	Close() error
}

// PartitionWriter writes the records of one partition. It is used by one
// goroutine.
type PartitionWriter interface {
	// Write writes one record. Records come in offset order; a gap means
	// records were lost upstream (the runtime logged it). After an error
	// the runtime calls Close and opens a new writer.
	Write(ctx context.Context, r *Record) error
	// Tick is called at least every second (after every fetch, even an
	// empty one, and while the runtime waits to reconnect) so that rolling
	// by age or idle time happens without new records. It returns the next
	// offset that is now durably published, or -1 if that did not change;
	// the runtime commits it.
	Tick(ctx context.Context, now time.Time) (int64, error)
	// Close publishes or abandons the open file cleanly and returns the
	// next offset durably published since the last Tick (or -1), even when
	// it also returns an error. ctx bounds the time it may take.
	Close(ctx context.Context) (int64, error)
}

// A TickDeadliner is a PartitionWriter that knows when its Tick next has
// work due (a file to publish once idle or old enough). The runtime's long
// poll at the end of the log then waits no longer than that, so an idle
// file is published IdleTimeout after its last record rather than up to
// MaxWait later. Called by the writer's goroutine, like Tick.
type TickDeadliner interface {
	// NextTick returns when Tick next has work due; false: nothing due.
	NextTick() (time.Time, bool)
}

// Start policies for a partition the sink knows nothing about.
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// Defaults for Options.
const (
	DefaultFetchBytes       = 1 << 20
	DefaultMaxWait          = 500 * time.Millisecond
	DefaultMetadataInterval = 5 * time.Second
	DefaultCloseTimeout     = 30 * time.Second
)

// Options configure Run.
type Options struct {
	// Name is the sink name: commits are stored under it. [A-Za-z0-9._-].
	Name string
	// Aggregators are host:port addresses, each consumed independently.
	Aggregators []string
	// Topics to consume; empty means every topic of every aggregator.
	Topics []string
	// FetchBytes is the most batch bytes one fetch asks for (the server
	// still returns a whole batch larger than that). It is about the
	// memory each partition being consumed holds for its batches, and a
	// fetch of 1 MiB of zstd batches is 6 MiB of records or more, so a
	// round trip is a few percent of a partition's time at most on a
	// local network; raise it over a long round trip. Default 1 MiB.
	FetchBytes int
	// MaxWait is how long a fetch waits at the end of the log (long poll).
	// Default 500ms; at most a few seconds, since Tick follows each fetch.
	MaxWait time.Duration
	// Start is where a partition starts when neither the sink nor the
	// aggregator knows an offset: "earliest" (default) or "latest".
	Start string
	// Logger receives the runtime's logs; nil discards them.
	Logger *slog.Logger
	// MetadataInterval is how often each aggregator's partitions are
	// listed again, so that new partitions are picked up. Default 5s.
	MetadataInterval time.Duration
	// CloseTimeout bounds the time spent, once ctx is done, closing each
	// writer and committing its offset. Default 30s.
	CloseTimeout time.Duration
	// Security is the TLS config and token of every connection.
	Security Security
	// Stats, when set, collects counters and every partition's position
	// for metrics.
	Stats *Stats
}

// maxWaitLimit bounds MaxWait: Tick must run at least every second or so.
const maxWaitLimit = 5 * time.Second

// withDefaults checks o and fills in defaults. The error lists every problem.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := batch.CheckName("sink name", o.Name); err != nil {
		errs = append(errs, err)
	}
	if len(o.Aggregators) == 0 {
		bad("no aggregators")
	}
	seen := map[string]bool{}
	for _, a := range o.Aggregators {
		switch {
		case a == "":
			bad("empty aggregator address")
		case seen[a]:
			bad("aggregator %q listed twice", a)
		}
		seen[a] = true
	}
	seen = map[string]bool{}
	for _, t := range o.Topics {
		if err := batch.CheckName("topic", t); err != nil {
			errs = append(errs, err)
		} else if seen[t] {
			bad("topic %q listed twice", t)
		}
		seen[t] = true
	}
	if o.FetchBytes < 0 || o.FetchBytes > batch.MaxSize {
		bad("fetch bytes %d: want 1 to %d", o.FetchBytes, batch.MaxSize)
	}
	if o.MaxWait < 0 || o.MaxWait > maxWaitLimit {
		bad("max wait %s: want at most %s", o.MaxWait, maxWaitLimit)
	}
	switch o.Start {
	case "":
		o.Start = StartEarliest
	case StartEarliest, StartLatest:
	default:
		bad("start %q: want %q or %q", o.Start, StartEarliest, StartLatest)
	}
	if o.MetadataInterval < 0 || o.CloseTimeout < 0 {
		bad("negative interval")
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("sinks: bad options: %w", errors.Join(errs...))
	}
	if o.FetchBytes == 0 {
		o.FetchBytes = DefaultFetchBytes
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.MetadataInterval == 0 {
		o.MetadataInterval = DefaultMetadataInterval
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stats == nil {
		o.Stats = NewStats()
	}
	return o, nil
}
