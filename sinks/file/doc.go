// Package file is logship's file-writing engine: it writes each
// partition's records into large files and publishes every file
// atomically by rename, so that each record appears in exactly one
// published file, once, even across crashes (decision 6 of DESIGN.md). It
// keeps no write-ahead log: the published files, and one small marker per
// partition written after each publish, are its state.
//
// The engine uses the filesystem only through the small FS interface. The
// local-file sink (type "file") is this package over OSFS; the HDFS sink
// (package sinks/hdfs) is this package over an FS of its own, so both
// share rolling, naming, formats and recovery.
//
// # Layout, naming version 1
//
// Names: do not change. A new layout gets a new suffix, and the recovery
// code of a later version reads version 1 names too.
//
//	Dir/_tmp/<topic>+<aggregator>+<partition>+<first>.<random>.tmp    being written
//	Dir/<path>/<topic>+<aggregator>+<partition>+<first>+<last><suffix>   published
//	Dir/<path>/<topic>+<aggregator>+<partition>+<first>+<last>+e<epoch><suffix>   published after a reset
//	Dir/_state/<topic>+<aggregator>+<partition>.marker                 the partition's marker
//	Dir/_state/<topic>+<aggregator>+<partition>.marker.<random>.tmp    a marker being written
//
//	topic, aggregator  [A-Za-z0-9._-]{1,128}, never "." or ".." (batch.ValidName);
//	                   '+' cannot appear in them, so the fields split without doubt
//	partition          decimal, no sign, no leading zero
//	first, last        offsets of the first and the last record of the file,
//	                   both inclusive, 20 decimal digits zero-padded, so that
//	                   the names of a partition sort by offset
//	random             16 lower-case hex digits, to keep temporary names unique
//	                   (a file a crashed HDFS writer left may still be under
//	                   its lease: a new name is never in its way)
//	epoch              the operator's reset epoch the file was written under
//	                   (logship offsets reset), decimal, no leading zero, >= 1;
//	                   absent for epoch 0, so names before any reset are version 1's
//	suffix             format and compression (below): .log .log.gz .log.zst
//	                   .json .json.gz .json.zst
//	path               Options.Path, a template rendered with the file's
//	                   partition and the time of its first record (below)
//
// # Path templates
//
// Options.Path is a directory relative to Dir, "/"-separated, whose
// elements mix text and fields: {topic}, {aggregator}, {partition}, and
// {yyyy} {mm} {dd} {hh}, the UTC year, month, day and hour of the file's
// first record (the time the agent read it; the time the aggregator stored
// it when that is unknown). The default "{topic}" is the layout of the
// first file sink. A file never moves: a file that spans midnight stays in
// the directory of its first record. Topics whose directory would be _tmp
// or _state are refused by Open.
//
// # Formats
//
// "lines": each record's data followed by '\n' (a record joined from
// several lines by a multiline rule keeps its inner newlines, so lines
// and records are counted apart). No header: the files are for people,
// grep and Hadoop tools.
//
// "json": one JSON object per record, on one line (inner newlines are
// escaped), keys in this order:
//
//	{"aggregator":"agg-1","topic":"app","partition":0,"offset":42,
//	 "time":"2024-05-01T13:04:05.123456789Z","append_time":"2024-05-01T13:04:05.2Z",
//	 "host":"web-1","source":"/var/log/app.log","data":"the record"}
//
// time is when the agent read the record, append_time when the aggregator
// stored it (ms), both RFC 3339 in UTC; data is the record as a JSON
// string, bytes that are not UTF-8 replaced by U+FFFD.
//
// Compression "gzip" makes the file one gzip member (RFC 1952), "zstd"
// one zstd frame (RFC 8878); either is the whole file, readable by
// gzip -d, zstd -d and Hadoop's codecs. RollSize then bounds the
// compressed size, estimated from above (the compressor's output plus the
// most input it may hold), so files come out a little smaller than
// RollSize, never larger (but for a single record larger than RollSize).
//
// A published file holds the records first..last of the partition, in
// offset order. A record is missing from a file only where the aggregator
// no longer had it, and the consumer runtime logged that as a WARN. Files
// of one partition never overlap unless the aggregator reset its log under
// the sink (the runtime WARNs about that too).
//
// # Marker, version 1
//
// Each partition has a marker, so that Open learns where the partition
// stands without listing a tree of hourly directories. It is a
// logship state file (internal/statefile): a text header with the kind,
// the version and a CRC32C (Castagnoli) of the body, then a JSON body:
//
//	logship sink-marker v1 crc32c=<8 hex> len=<body bytes>\n
//	{"topic":"app","aggregator":"agg-1","partition":0,"epoch":0,
//	 "next":1000,"file":"app/2024/05/01/13/app+agg-1+0+…0+…999.log",
//	 "pending":{"tmp":"_tmp/app+agg-1+0+…1000.0123456789abcdef.tmp",
//	            "file":"app/2024/05/01/13/app+agg-1+0+…1000+…1999.log","next":2000}}\n
//
//	epoch, next, file  the newest published file (path relative to Dir), its
//	                   epoch and the offset after its last record: always a
//	                   publish that completed ("file" is "", next and epoch 0
//	                   before the first: an intent's marker, or the one Open
//	                   writes after settling an intent whose rename never came)
//	pending            optional: a publish under way, written before its rename
//
// The CRC covers the body exactly. The marker is replaced atomically
// (temporary file, sync, close, rename over it, sync of Dir/_state), twice
// per publish: with "pending" before the rename, without it after.
//
// # Writing and publishing
//
// A partition's writer creates its temporary file at the partition's
// first record after the previous file was published, writes records into
// it through the compressor, if any, and a large buffer (on Linux, OSFS
// starts the write-back of every 4 MiB written, so that the sync at
// publish finds little left to write), and publishes it
// when it rolls: before a record would grow it past RollSize, RollInterval
// after its first record, IdleTimeout after its last one (both checked by
// Tick, which the runtime calls at least every second, with or without
// records), and at shutdown (Close, within its context's deadline).
// Publishing is: end the compressed stream, flush the buffer, sync and
// close the file (on HDFS, close completes the file and ends its lease),
// make the final directory (and, the first time the writer uses it, sync
// its parents even when it exists: a crashed run may have made it and
// died before syncing them), check that the final name does not exist (a
// published file is never overwritten), write the marker with the file as
// pending, rename the temporary file to its final name, sync the final
// directory, write the marker with the file as the newest. Only then is
// the file's next offset (last+1) reported to the runtime, which commits
// it to the aggregator: a commit follows the files, never leads.
//
// A file is created at its first record, so no file is ever empty, and is
// published only after its last byte was written, synced and closed
// without error, so no file is ever half. An error before the close makes
// the writer fail: Close deletes the temporary file (thrown away, never
// patched), and the runtime opens a new writer, which fetches the records
// again. The steps after the close touch only names and are retried in
// place (Options.Retries, with a backoff) before the writer fails.
//
// # Time bounds
//
// Open and Close are bounded by their context, as package sinks asks (the
// runtime cancels Open at shutdown and gives Close 30s by default); so
// are Write and Tick, which may publish. The writer hands a file the
// deadline of Close's context (Deadliner), and does the namespace
// operations of each call through FS.WithContext(ctx) when the FS is a
// ContextFS (HDFS: a NameNode call returns when ctx ends, however long its
// own timeout). In-place retries stop when ctx ends. A Close that runs out
// of time abandons the file and does not try to delete it: the next Open
// deletes it (rule 1 below), and its records are written again.
//
// # Recovery
//
// Open(aggregator, topic, partition) makes Dir/, Dir/_tmp/ and
// Dir/_state/ exist and durable, and then:
//
//  1. Deletes the partition's temporary files in Dir/_tmp/ and its
//     marker's in Dir/_state/. A temporary file is never the truth:
//     whatever step a crash stopped it at, its records were not reported,
//     and they are fetched and written again. One that cannot be deleted
//     is logged and left; new temporary names never collide with it.
//  2. Reads the marker. A damaged one (CRC, header, body, another
//     partition's) is renamed to .broken, logged as an ERROR, and treated
//     as missing. A pending publish is settled: if its final name exists,
//     the rename happened and the file is the newest; if not, the crash
//     came before the rename. The marker is rewritten without it.
//  3. Finds the newest published file: with a template without time
//     fields, by listing the partition's one directory (the marker is
//     checked against it, and the files win when they go further); with
//     time fields, from the marker, checking with one Stat that its file
//     exists (a file moved away by someone else is logged, and the marker
//     still trusted); without a marker, by listing only the directories
//     the template can give the partition.
//  4. Returns last+1 of the newest file of the highest epoch, or -1 when
//     there is none. The runtime resumes there, whatever the aggregator's
//     commit says, and fetches from its committed offset only when Open
//     says -1. The exception is a replay: when the aggregator's epoch is
//     higher than the newest file's, an operator reset the offset, and
//     Open returns the aggregator's offset; the files written from there
//     carry the new epoch, so the replayed range sits beside the first
//     copy, and the names show the overlap. The marker records the epoch
//     with its first publish.
//  5. Syncs the newest file's directory: a rename that a crash left
//     visible but not yet durable is made durable before the runtime
//     builds on it.
//
// Names that do not parse in a directory of published files and foreign
// files in Dir/_tmp/ or Dir/_state/ are left alone and logged once as a
// WARN. Overlapping files of one partition are logged as a WARN.
//
// A crash at each step, then Open:
//
//	during writes, before close   tmp file deleted: records written again       no loss, no repeat
//	after close, before intent    tmp file deleted: records written again       no loss, no repeat
//	after intent, before rename   final name missing: written again             no loss, no repeat
//	after rename, before marker   final name exists: the file counts            no loss, no repeat
//	after marker, before commit   the marker wins over the old commit           no loss, no repeat
//
// The one case this cannot tell apart: a file published and then moved
// away by someone else before the marker after its rename was written
// (a crash in between) is written again.
//
// # Limits
//
// One sink per Dir: two sinks consuming the same partitions into the same
// Dir would delete each other's temporary files and share markers. Open
// refuses a partition already open in the same Sink.
//
// An aggregator that lost or reset its log under the sink (the runtime
// WARNs and goes on from the log's new end) gives old offsets to new
// records at the same epoch. Their files overlap the old ones (WARNed), a
// file whose first and last offsets match an old one's exactly is refused
// (a published file is never overwritten: the writer fails, and the
// runtime, resuming after the old files, jumps again), and a listing
// resumes after the old files, which go further. Names cannot tell the
// two logs apart without a new naming version; the sound fix is for the
// aggregator to start a new epoch when it resets a log, which names and
// recovery already order.
package file
