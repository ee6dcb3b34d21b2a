// Package cassandra is logship's Cassandra sink: one row per record, with a
// primary key that makes every write idempotent, so that at-least-once
// delivery has an exactly-once effect (decision 7 of DESIGN.md).
//
// # Schema
//
// Created by create_schema (keyspace with the configured replication, then
// the table; both only when missing), checked otherwise: Open fails until
// the table can be read with these columns. Do not change: a new layout is
// a new table.
//
//	CREATE TABLE "<keyspace>"."<table>" (
//	    topic      text,       -- the record's topic
//	    host       text,       -- the agent id of the host that read it
//	    bucket     timestamp,  -- ts rounded down to the bucket (default 1h)
//	    ts         timestamp,  -- the record's time as the agent read it, ms
//	    aggregator text,       -- the aggregator that stores it
//	    "partition" int,       -- its partition there
//	    "offset"   bigint,     -- its offset in that partition
//	    source     text,       -- the file it was read from
//	    line       text,       -- the record, without its newline
//	    raw        blob,       -- the record's bytes, only when not valid UTF-8
//	    PRIMARY KEY ((topic, host, bucket), ts, aggregator, "partition", "offset")
//	) WITH compaction = {'class': 'TimeWindowCompactionStrategy', ...1 day windows}
//
// The partition key (topic, host, bucket) is what logs are read by: one
// host's records of one topic in one time span, in time order. The
// clustering key starts with ts for that order; aggregator, partition and
// offset follow because they name the record: two records never share them
// (an offset is unique per aggregator, topic and partition), and a record
// delivered again (a retry, a restart before the commit, an operator's
// replay) always maps to the same row, whose cells it overwrites with the
// same values. Every value comes from what the aggregator stores (the
// agent's time included), never from the sink's clock.
//
// Changes from the sketch, and why:
//   - raw: Cassandra refuses text that is not UTF-8, and log files hold any
//     bytes. Such a record is written with the bad bytes replaced by U+FFFD
//     in line and its exact bytes in raw; for the usual valid record raw is
//     left unset (not null: no tombstone).
//   - "partition" and "offset" are quoted in CQL (keywords in some
//     versions); the quoted lower-case names are plain columns. The
//     keyspace and table names are quoted in every statement too (so a
//     word that is a keyword in some version stays a name); they must be
//     lower-case identifiers and not reserved CQL keywords, which every
//     query a person writes would have to quote.
//   - A source path that is not UTF-8 is written with U+FFFD.
//
// Sizing: a partition holds one host's records of one topic for one
// bucket. Cassandra prefers partitions below ~100 MB: a host writing 1,000
// lines of 200 bytes a second fills 720 MB an hour, so set bucket to 5m or
// less for such hosts. TTL: the ttl key sets it on every write (USING TTL);
// a replay writes the rows again and so restarts their TTL.
//
// # Writes
//
// A partition's writer (one per aggregator, topic and partition) groups
// records by partition key into unlogged batches: never a batch of two
// partition keys (Cassandra's "batch too large" and its poor throughput
// are a multi-partition batch's), each below batch_max_bytes by the
// estimate rowSize (text bytes plus a fixed overhead), a record larger
// than that in a batch of its own. Single-partition batches are exempt
// from Cassandra's batch_size_fail_threshold (CASSANDRA-10876). A batch
// is sent when it is full, when the writer holds more than 8 ×
// batch_max_bytes unsent, and at every Tick (the runtime ticks after every
// fetch). The sink's concurrency goroutines write them: at most that many
// requests are in flight for the whole sink, retries included. A batch
// waiting out its backoff holds none of them (it waits in a queue, on a
// timer), so a partition key that keeps failing never stalls the other
// partitions; batches due for a retry go before new ones.
//
// Bounds: a writer has at most concurrency batches sent and not finished
// (being written or waiting for a retry), so at most concurrency ×
// batch_max_bytes of them besides its 8 × batch_max_bytes unsent; Write
// (and Tick, which sends) waits while it is at that bound or all the
// goroutines are busy, until a batch finishes or its ctx ends. What it
// remembers of the records after a batch that keeps failing is bounded
// too: runs of written records are merged, so it keeps one entry per run
// of an unfinished batch, whatever the number of records written since.
// The driver routes each batch to a replica of its partition key
// (token-aware), preferring local_dc when set.
//
// # Offsets
//
// The sink keeps no position: Open returns -1, and the runtime resumes at
// the aggregator's committed offset. A writer remembers, in offset order,
// which batch each run of records went into. Batches complete in any
// order; Tick and Close report the offset below which every record is
// written (or dead-lettered), so the commit never passes a batch that is
// still being tried. A crash re-delivers from the commit: rewritten rows,
// no loss.
//
// An operator's reset (logship offsets reset, a higher epoch) makes the
// runtime reopen the writer at the reset offset; the replayed records
// simply rewrite the same rows, so a replay never duplicates a row.
//
// # Failures
//
// Each failed try is counted once, under the kind that decides what
// follows (Stats.Errors: a refused record whose table cannot be read
// either is config, not also rejected), and sorted by the driver's error
// type or code, never by message:
//
//	timeout, unavailable,    retried with exponential backoff (retry_min to
//	overloaded, connection,  retry_max, equal jitter), forever unless
//	other                    max_retries is set; each retry counted
//	config                   unauthorized, syntax, a table that cannot be
//	                         read: retried the same way, logged as ERROR
//	rejected                 invalid request: the batch is split in halves
//	                         until the refused record is alone; if a read
//	                         of its partition then succeeds, the record is
//	                         dead-lettered, else the table is at fault
//	                         (config)
//	too_large                a record above max_record_bytes (default
//	                         8 MiB): dead-lettered without being sent
//	retries_exhausted        max_retries reached: dead-lettered (counted
//	                         besides the last try's own kind: a give-up)
//	dead_letter_io           the dead-letter file cannot be written:
//	                         retried; the records wait, never dropped
//
// Retries log the first failure of each kind and then one per 10 s; the
// counters have them all. Retries never block shutdown: Close(ctx) of a
// writer waits for its batches until ctx ends, then cancels their retries
// (those waiting on a timer end at once) and returns the written prefix
// (and an error naming what was not written, which the runtime delivers
// again after a restart).
//
// Limits: batch_max_bytes and max_record_bytes are at most 15 MiB, below
// the 16 MiB mutation Cassandra accepts by default (max_mutation_size,
// half of commitlog_segment_size; lower them if the cluster's is lower).
// ttl is at most Cassandra's 20 years, and must end 30 days before
// 2038-01-19T03:14:07Z, counted from when the sink starts: Cassandra 3
// and 4 store expiry times in 32-bit seconds and by default refuse a
// write whose TTL ends later (CASSANDRA-14092), which would send every
// record to the dead-letter file. (Cassandra 5.0 stores later times; the
// check is for the versions before it.)
//
// # Dead letters
//
// A record Cassandra can never accept goes to the file
// <dead_letter_dir>/<sink>.deadletter.jsonl, and the sink logs an ERROR
// naming its offsets; the partition goes on. Format version 1, one JSON
// object per line (DeadLetter):
//
//	{"v":1,"time":"2025-01-02T03:04:05.123456789Z","sink":"cassandra-main",
//	 "aggregator":"agg-1","topic":"app","partition":0,"offset":1234,
//	 "ts":"2025-01-02T03:04:01.5Z","host":"web-1","source":"/var/log/app.log",
//	 "kind":"rejected","error":"...","line":"the record"}
//
// kind is too_large, rejected or retries_exhausted; line holds the record
// when it is valid UTF-8, line_base64 (standard base64) otherwise. Lines
// are appended and fsynced before the records count as handled, the file
// is created when missing, and it is opened for each write: rename it
// away to process it. A directory that got a new entry (the file, or a
// directory the sink made for it) is fsynced before the write counts, and
// stays due for it until an fsync succeeds, even when the write that
// created the entry failed. A record may appear twice
// (a crash before the commit, a replay): (aggregator, topic, partition,
// offset) identifies it. A line cut by a crash is ended with a newline
// before the next append: a line that does not parse is such a torn line,
// and its records follow again in whole lines.
//
// # Config
//
// A [[sink]] with type = "cassandra" (config.CassandraSink; the example is
// testdata/config/sinks-cassandra.toml) sets Options: hosts, keyspace,
// table, consistency, ttl, create_schema, replication, username,
// password or password_file, tls_ca_file, tls_cert_file, tls_key_file,
// tls_server_name, local_dc, concurrency, batch_max_bytes,
// max_record_bytes, bucket, request_timeout (Timeout), retry_min,
// retry_max, max_retries and dead_letter_dir; the keys of the other sink
// types are refused on it, and its keys on them. hosts are host, host:port
// or an IPv6 address ([addr]:port with a port), each once. The sink
// connects at the first Open, in the background: a cluster that cannot be
// reached makes Open fail (the runtime retries it with backoff), never the
// process. Sink.Close ends a connection attempt under way: gocql's connect
// takes no context, so the sink's dialer closes the connections it made.
package cassandra
