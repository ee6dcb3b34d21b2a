// Package file is logship's local-file sink: it writes each partition's
// records into large files, one record per line, and publishes every file
// atomically by rename, so that each record appears in exactly one
// published file, once, even across crashes (decision 6 of DESIGN.md). It
// keeps no write-ahead log and no state file: the names of the published
// files are its state.
//
// The rolling, naming and recovery code uses the filesystem only through
// the small FS interface, so that the HDFS sink reuses it with its own FS.
//
// # Layout, naming version 1
//
// Names: do not change. A new layout gets a new suffix (".log" is version
// 1), and the recovery code of a later version reads version 1 names too.
//
//	Dir/_tmp/<topic>+<aggregator>+<partition>+<first>.<random>.tmp    being written
//	Dir/<topic>/<topic>+<aggregator>+<partition>+<first>+<last>.log   published
//	Dir/<topic>/<topic>+<aggregator>+<partition>+<first>+<last>+e<epoch>.log   published after a reset
//
//	topic, aggregator  [A-Za-z0-9._-]{1,128}, never "." or ".." (batch.ValidName);
//	                   '+' cannot appear in them, so the fields split without doubt
//	partition          decimal, no sign, no leading zero
//	first, last        offsets of the first and the last record of the file,
//	                   both inclusive, 20 decimal digits zero-padded, so that
//	                   the names of a partition sort by offset
//	random             16 lower-case hex digits, to keep temporary names unique
//	epoch              the operator's reset epoch the file was written under
//	                   (logship offsets reset), decimal, no leading zero, >= 1;
//	                   absent for epoch 0, so names before any reset are version 1's
//
// A published file holds the records first..last of the partition, in
// offset order, each as its data followed by '\n' (a record joined from
// several lines by a multiline rule keeps its inner newlines, so lines
// and records are counted apart). It has no header: it is meant for
// people, grep and HDFS tools. A record is missing from a file only where
// the aggregator no longer had it, and the consumer runtime logged that
// as a WARN. Files of one partition never overlap unless the aggregator
// reset its log under the sink (the runtime WARNs about that too).
//
// The topic "_tmp" cannot be consumed by this sink: Open refuses it.
//
// # Writing and publishing
//
// A partition's writer creates its temporary file at the partition's
// first record after the previous file was published, writes records into
// it through a large buffer, and publishes it when it rolls: before a
// record would grow it past RollSize, RollInterval after its first record,
// IdleTimeout after its last one (both checked by Tick, which the runtime
// calls at least every second, with or without records), and at shutdown.
// Publishing is: flush the buffer, fsync the file, close it, check that
// the final name does not exist (a published file is never overwritten),
// rename the temporary file to its final name, fsync Dir/<topic>/. Only
// then is the file's next offset (last+1) reported to the runtime, which
// commits it to the aggregator: a commit follows the files, never leads.
//
// # Recovery
//
// Open(aggregator, topic, partition) makes Dir/, Dir/_tmp/ and
// Dir/<topic>/ exist and durable, and then:
//
//  1. Deletes the partition's temporary files in Dir/_tmp/. A temporary
//     file is never the truth: whatever step a crash stopped it at, its
//     records were not reported, and they are fetched and written again.
//  2. Lists Dir/<topic>/, parses every name strictly, and returns last+1
//     of the partition's file with the highest last offset among those of
//     the highest epoch, or -1 when it has none. The runtime resumes there,
//     whatever the aggregator's commit says, and fetches from its committed
//     offset only when Open says -1. The exception is a replay: when the
//     aggregator's epoch is higher than every file's, an operator reset the
//     offset, and Open returns the aggregator's offset; the files written
//     from there carry the new epoch, so the replayed range sits beside the
//     first copy, and the names show the overlap.
//  3. fsyncs Dir/<topic>/ when it found files: a rename that a crash left
//     visible but not yet durable is made durable before the runtime
//     builds on it.
//
// Names that do not parse, files of another topic in a topic directory and
// foreign files in Dir/_tmp/ are left alone and logged once as a WARN.
// Overlapping files of one partition are logged as a WARN.
//
// A crash at each step, then Open:
//
//	during writes, before fsync   tmp file deleted: records written again       no loss, no repeat
//	after fsync, before rename    tmp file deleted: records written again       no loss, no repeat
//	after rename, before dir sync file published or not, never both published   no loss, no repeat
//	after dir sync, before commit file published; it wins over the old commit   no loss, no repeat
//
// # Limits
//
// One sink process per Dir: two processes consuming the same partitions
// into the same Dir would delete each other's temporary files. Open
// refuses a partition already open in the same Sink.
package file
