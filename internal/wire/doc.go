// Package wire is logship's protocol between agents, aggregators and
// consumers (sinks, logship cat): a preamble, a handshake, then frames, over
// one TCP connection. An agent sends every topic over its one connection.
//
// # Preamble
//
// The client opens with 8 bytes; the server checks them before anything
// else, so that a stray client (an HTTP probe, garbage) is refused at once
// with a clear reason:
//
//	0  4  magic    "LSHP"
//	4  1  min version the client speaks
//	5  1  max version the client speaks
//	6  2  reserved, zero
//
// The server picks the highest version both speak and answers the Hello
// frame with Welcome (carrying that version) or Error.
//
// # Frames, version 1
//
// All integers are big-endian.
//
//	0  4  length   bytes after this field: 1 + payload; at most the receiver's max frame size
//	4  1  type
//	5  .  payload
//
// Payload fields are encoded in order with these primitives: u8, u16, u32,
// u64/i64 (fixed width), and str (u16 length + bytes). Batches travel as the
// rest of the frame: a batch carries its own length and CRC32Cs
// (logstore/batch), so frames carry no CRC of their own.
//
//	type  name            direction         payload
//	 1    Hello           client → server   u8 version, u8 role (1 agent, 2 consumer), str id, str token
//	 2    Welcome         server → client   u8 version, str aggregator id, u32 max frame bytes
//	 3    Error           either            u16 code, str message; the sender closes the connection after it
//	 4    Produce         agent → server    u64 seq, then one batch (base offset 0)
//	 5    ProduceAck      server → agent    u64 seq, u8 status, i64 stored end, u32 partition, i64 base offset, str message
//	 6    Fetch           consumer → server u64 req, str topic, u32 partition, i64 offset, u32 max bytes, u32 max wait ms
//	 7    FetchResult     server → consumer u64 req, u8 status, i64 start, i64 end, then stored batches back to back
//	 8    Metadata        consumer → server u64 req, u16 n, n × str topic (n = 0: every topic)
//	 9    MetadataResult  server → consumer u64 req, str aggregator id, u32 n, n × (str topic, u32 partition, i64 start, i64 end)
//	10    OffsetCommit    consumer → server u64 req, str sink, str topic, u32 partition, i64 offset, u64 epoch
//	11    OffsetCommitted server → consumer u64 req, u8 status (0 ok, 1 invalid, 2 failed, 3 reset), str message
//	12    OffsetFetch     consumer → server u64 req, str sink, str topic
//	13    Offsets         server → consumer u64 req, u32 n, n × (u32 partition, i64 offset, u64 epoch)
//	14    OffsetReset     consumer → server u64 req, str sink, str topic, u32 partition, i64 offset; answered by OffsetCommitted
//	15    OffsetForTime   consumer → server u64 req, str topic, u32 partition, i64 unix ms
//	16    OffsetTime      server → consumer u64 req, u8 status (0 ok, 1 unknown partition, 2 failed), i64 offset, str message
//	17    Status          consumer → server u64 req
//	18    StatusResult    server → consumer u64 req, then a JSON document (wire.Status, "version": 1) to the end of the frame
//
// Committed offsets carry a reset epoch: 0 at the first commit, one more
// at each OffsetReset (an operator's replay). A sink commits under the
// epoch it read; a commit under another epoch gets status 3 (reset) and
// is not stored, so a running sink can never overwrite a reset it has not
// seen yet. It sees it in Offsets, which it asks for every few seconds.
//
// Agents pipeline Produce frames (up to their window of unacknowledged
// bytes) and match acks by seq; the server acks in the order it received.
// Consumers send one request at a time and wait for its answer.
//
// ProduceAck status (decision 2 of DESIGN.md: exactly-once from file to log):
//
//	0 Appended   stored now; stored end is the batch's range end
//	1 Duplicate  already stored earlier; stored end is where the source's stored data ends
//	2 Resync     the batch overlaps the source's stored data without being
//	             covered by it; the agent must drop what it has in flight for
//	             the source and resume reading it at stored end
//	3 Failed     the aggregator could not store it (disk full, I/O error);
//	             it ignores every later frame of the connection, so the agent
//	             closes it and retries later, on this aggregator or another
//
// The aggregator decides, per (topic, agent id, source id), in this order:
// an unknown source is appended whatever its range start; a batch whose
// range ends at or before the stored end is a Duplicate; one that starts
// exactly at the stored end is Appended; one that starts before the stored
// end and ends after it gets Resync, and the aggregator remembers on that
// connection that the source is resyncing; one that starts after the
// stored end (a gap: the agent skipped bytes on purpose, or failed over
// from another aggregator) gets Resync while that connection's source is
// resyncing (it is then a stale in-flight batch), and is Appended, and
// logged, otherwise. A batch that starts exactly at the stored end ends
// the resync.
//
// An ack is only sent once the batch (or, for Duplicate, everything stored
// before it) is durable per the aggregator's fsync policy.
package wire
