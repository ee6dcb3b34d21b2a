// Package sinks is logship's consumer runtime: it pulls stored batches from
// every aggregator, decodes them and hands their records, in offset order
// per partition, to a Sink (HDFS, Cassandra, local files), and commits the
// sink's progress back to each aggregator under the sink's name.
//
// # Offsets
//
// A partition is identified by (aggregator id, topic, partition): offsets of
// different aggregators are unrelated. Every offset the runtime stores or
// passes around is a "next offset": the offset of the first record not yet
// durably handled.
//
// Where a partition's consumption starts is decided once per writer, in this
// order (decision 6 of DESIGN.md: the sink's own output is the truth):
//
//  1. the offset the sink itself reports from Open (a file sink reads it
//     back from the names of its published files);
//  2. when the sink knows nothing (-1): the offset the sink last committed
//     to the aggregator;
//  3. when nothing was committed either: Options.Start, "earliest" (the
//     partition's first stored record) or "latest" (its end).
//
// The chosen offset is committed at once when the aggregator's commit
// differs, so that lag is measured from where the sink really stands, and
// a "latest" start is pinned before any record is read.
//
// After that the runtime commits whatever offset the writer reports from
// Tick or Close: the sink decides what is durable, the runtime never does.
// Commits are for visibility (lag) and for sinks that know nothing
// themselves; losing one (crash, aggregator down) costs nothing but a
// re-delivery to such a sink.
//
// When a fetched offset is out of range, the runtime never moves silently:
// below the partition's start (retention deleted records the sink had not
// read yet) it logs a WARN naming the lost range and goes on from the start;
// above the end (the aggregator lost or reset its log) it logs a WARN and
// goes on from the end. Either way it first closes the partition's writer,
// so that no output file spans the jump.
//
// # Goroutines
//
// Run starts one goroutine per aggregator, which lists the aggregator's
// partitions every Options.MetadataInterval, and one goroutine per
// (aggregator, topic, partition), with its own connection (a Client), its
// own Decoder and its own PartitionWriter. Run owns them all and returns
// only once every one has stopped. A sink's Open may be called from many
// goroutines at once; each PartitionWriter is used by one goroutine.
//
// Decompressing is most of a sink's CPU. When a fetch holds several
// batches, the partition's Decoder decompresses two at a time, on two
// goroutines that Decode starts and waits for, while the partition's
// goroutine hands the records of each, in order, to the writer: a
// partition that is the last one left busy (a catch-up, a replay) uses two
// cores, not one. Each of them decompresses into one buffer of its own, and
// starts its next batch only once the writer is done with its last.
//
// Errors are retried with a capped exponential backoff: a dead aggregator
// or a failing writer never stops the other partitions. While a partition
// waits, its writer is still ticked every second, so that a file is
// published on time even when its aggregator is down. An aggregator that
// is down is logged once at WARN, then at DEBUG until it answers; one that
// refuses the sink's credentials (a wrong token, or one that may not
// connect as this sink) is a configuration error that retrying does not
// heal: it is logged at ERROR on every attempt, and Stats.Refused names it
// apart from Stats.Unreachable.
package sinks
