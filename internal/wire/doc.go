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
// frame with Welcome (carrying that version) or Error. A client whose
// range the server does not meet gets an Error frame (code 2, "no common
// protocol version: client speaks 3..4, server 1..2") and the connection
// is closed. Versions:
//
//	1  the frames below except Heartbeat and AgentReport
//	2  adds Heartbeat (type 19) and AgentReport (type 20); nothing else changes
//
// # TLS
//
// With TLS on (crypto/tls, TLS 1.2 at least), the TLS handshake comes first
// and everything above and below travels inside it. With mutual TLS the
// aggregator refuses a client whose certificate is missing, expired or not
// signed by its CA during the TLS handshake, before any logship byte. A
// plain client on a TLS listener, or a TLS client on a plain one, is told
// so in the aggregator's log (and, where the protocol allows, to the
// client). DescribeTLSError words certificate failures for operators.
//
// Certificates rotate without a restart: a server reads its certificate,
// key and client CAs again, and a client its certificate and key, at a
// handshake when the files changed (looked at once a second at most);
// files that do not load keep the previous ones in use. A client reads the
// CAs it trusts for servers once, at start.
//
// # Authentication
//
// Hello carries a token (empty when the client has none). When the
// aggregator has tokens configured, a Hello whose token is unknown, or
// whose token lacks the role the Hello asks for (agent or consumer), gets
// Error code 3 (auth) and the connection is closed; the message never says
// which tokens exist. A token may also be limited to some client ids (an
// agent's own token): its holder then acts only as the id of its Hello
// (an agent's batches carry that agent id; a consumer's OffsetCommit,
// OffsetReset and OffsetFetch name that sink), and any other request gets
// Error code 3 and the connection is closed. OffsetReset needs a token
// with the admin role: from any other token it gets Error code 3 and the
// connection is closed. With
// no tokens configured every Hello is accepted, as are resets. Tokens are
// secrets: without TLS they cross the network in clear.
//
// # Timeouts and heartbeats
//
// A server bounds the wait for the first byte of each frame (idle timeout)
// and the time a frame may take once it began (read timeout), so that a
// client that sends nothing, or trickles a byte a second, is cut with a
// logged reason. A version 2 client that has nothing to send sends a
// Heartbeat every HeartbeatInterval (10 s), and a server's idle timeout is
// at least MinIdleTimeout (30 s: config refuses less); the server answers each
// Heartbeat with one carrying the same nonce, in order with its other
// answers. A client that hears nothing for a while (no ack, no heartbeat)
// gives the connection up: that is how an agent notices an aggregator that
// vanished behind a live route. A version 1 client sends no heartbeats, so
// an idle one is cut at the idle timeout and reconnects when it has data.
//
// # Frames, version 1 and 2
//
// All integers are big-endian.
//
//	0  4  length   bytes after this field: 1 + payload; at most the receiver's max frame size
//	4  1  type
//	5  .  payload
//
// The server's max frame size (sent in Welcome) bounds an agent's Produce
// only: every other frame a client sends, during the handshake and after
// it, is bounded by MaxControlFrame (64 KiB), so that a server takes a
// large buffer only for a batch. A frame over its bound is refused from
// its header (Error code 1).
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
//	19    Heartbeat       either            u64 nonce; version 2; a client sends it, the server echoes it
//	20    AgentReport     agent → server    u32 open files, i64 lag bytes, u16 n, n × (str topic, str path, i64 size, i64 acked);
//	                                        version 2; not answered; the files that lag most, within 63 KiB
//
// Committed offsets carry a reset epoch: 0 at the first commit, one more
// at each OffsetReset (an operator's replay). A sink commits under the
// epoch it read; a commit under another epoch gets status 3 (reset) and
// is not stored, so a running sink can never overwrite a reset it has not
// seen yet. It sees it in Offsets, which it asks for every few seconds.
//
// The aggregator checks a batch's framing, both CRC32Cs, its lengths,
// names and agent id (batch.Parse and the checks in aggregator/doc.go),
// and stores the compressed records as they came: it neither decompresses
// them nor decodes the records. By design: decompressing every batch on
// the ingest path would cost the aggregator the CPU that the agents'
// compression saves, and the CRCs already catch damage in transit and on
// disk. So a batch that an agent built wrong (compressed content that does
// not decompress, or records that do not decode, under a good CRC) is
// stored and served; a sink stops at it with an error wrapping
// sinks.ErrCorruptFetch, after delivering the records before it, and
// retries there (logging the error) until an operator resets its offset
// past the batch (logship offsets reset).
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
//
// # Failover and exactly-once across aggregators
//
// The dedup state above is per aggregator: aggregators share nothing. So
// exactly-once holds for every batch an agent sends again to the same
// aggregator (after a reconnect, a crash of either side, a cut
// connection), and does not hold across aggregators. When an agent loses
// its connection with batches unacknowledged, it cannot know whether the
// aggregator stored them (it may have stored and fsynced them, and died
// before the ack left). If it then sends them to another aggregator, that
// one stores them too: those records are in the log twice, once on each
// aggregator, with different (aggregator, partition, offset), so even an
// idempotent sink writes them twice. At most the agent's window of
// unacknowledged bytes (window_bytes) is duplicated per failover; nothing
// is lost. The agent's failover line says how many batches and bytes it
// sends again, and logship_agent_failover_resent_bytes_total counts the
// bytes sent again to another aggregator (agent/doc.go, "Window and
// acks"). If the agent later comes back to the first aggregator, that one
// sees the source continue after a gap (logged at INFO, counted in
// logship_aggregator_gaps_total) and stores nothing twice itself.
//
// What limits it, in the agent (agent/conn.go):
//   - Each agent has a home aggregator: the list entry picked by a hash of
//     its id, so a fleet spreads across the list. A restarting agent goes
//     back first to the aggregator it last sent to (its positions file
//     names it), which holds whatever it sent without an ack.
//   - It sticks to the aggregator it is connected to while that one is
//     healthy, and retries the same aggregator once (with backoff) before
//     it fails over, since a lost connection to a live aggregator (a
//     network blip, an aggregator restart) costs no duplicate there.
//   - It fails over only after failures in a row; backoff is exponential
//     with jitter, so a fleet does not move (or come back) all at once.
//   - Away from home, it moves back once home takes connections again
//     (looked at about once a minute, jittered), so that the fleet spreads
//     over the list again after an aggregator's restart rather than staying
//     where the failover left it. It moves only with nothing in flight:
//     it stops sending and waits for every ack first, so the move itself
//     duplicates nothing.
package wire
