// Package aggregator is logship's server: it accepts agent and consumer
// connections (protocol: internal/wire), appends the agents' batches to the
// log (logstore) exactly once per source range, and serves the log and the
// sinks' committed offsets to consumers.
//
// # Lifecycle and goroutines
//
// New opens the log under DataDir/log, rebuilds the dedup state from it,
// loads the committed offsets from DataDir/offsets and binds the listener.
// Run accepts connections until its context is done, then shuts down:
// it closes the listener, wakes every connection's reader with a read
// deadline in the past (a long-polling Fetch is woken through the context),
// lets each agent connection's writer ack what was already appended once it
// is durable, closes the connections, waits for every goroutine and closes
// the log. Run owns every goroutine the package starts:
//
//   - the accept loop;
//   - per agent connection, a reader (it owns reads: it reads and checks
//     the frames), an appender (it owns the dedup marks of the connection
//     and the appends) and a writer (it owns writes: it waits for
//     durability and sends the acks), joined in that order by two bounded
//     queues; on a busy server the reader and the appender are one
//     goroutine (see Agents);
//   - per consumer connection, one goroutine: consumers send one request at
//     a time, so a writer of its own would have nothing to overlap.
//
// An error on one connection (a bad frame, a peer that vanished, a write
// that timed out) is logged and closes that connection only.
//
// # Handshake, TLS and authentication
//
// With Options.TLS set the server runs the TLS handshake first (with a CA
// in it, mutual TLS: a client certificate signed by that CA is required).
// It then reads the preamble and Hello and answers with Welcome{version,
// Options.ID, Options.MaxFrameBytes}. Each handshake must complete within
// HandshakeTimeout or Options.IdleTimeout, whichever is shorter. A failed
// TLS handshake is logged at WARN (keys remote and err, the err saying
// whose certificate was refused and why: expired, unknown CA, wrong name,
// missing; or that the client does not speak TLS, in which case a logship
// client gets a plain Error frame saying TLS is required) and counted as
// reason "tls". A bad preamble or Hello is logged at WARN (keys remote and
// err) and the connection is closed ("handshake"; a client that sent
// nothing before the handshake timeout counts as "idle", one that began
// its preamble and did not finish it as "slow"); a well-formed Hello that
// is refused (unknown role; an agent whose id is not a valid name: "hello";
// a missing or unknown token, or one without the Hello's role or id:
// "auth") gets an Error frame first. Tokens (Options.Tokens, see Token)
// are looked up by the SHA-256 of the presented secret and compared in
// constant time; no message names a secret. A token limited to some ids
// (Token.IDs) binds the connection to the id of its Hello: an agent's
// batches must carry that agent id, and a consumer may commit, reset and
// fetch the offsets of that sink only (below). Without tokens every Hello
// is accepted and may reset offsets.
//
// # Timeouts
//
// After the handshake every read of a frame is bounded twice: its first
// byte must come within Options.IdleTimeout (default 2m; agents send
// Heartbeats when they have nothing else to send, and the server answers
// each in order with the acks), and the rest of it within
// Options.ReadTimeout (default 30s), so that a client that trickles bytes
// cannot hold a connection. Either closes the connection with an Error
// frame (code timeout), a WARN line and the reasons "idle" and "slow".
// Writes are bounded by WriteTimeout.
//
// # Memory per connection
//
// A connection holds its two 16 KiB buffers (wire.ConnBufferSize), a
// payload buffer of at most 16 KiB, a queue of at most 256 acks, and two
// goroutines; TLS adds its record buffers. Every frame is read into a
// buffer borrowed from a process-wide pool (a small one is copied there)
// and given back once it is appended, so an idle connection holds no
// large buffer, and the memory for batches is bounded by the connections
// reading at the same moment: one frame each, plus, for the connections
// not pipelined that group the frames they find whole in their socket
// (see Agents), at most 1 MiB each and GOMAXPROCS MiB in all. A
// pipelined connection (see Agents; at
// most GOMAXPROCS/2 of them) has a third goroutine and reads ahead: its
// reader waits for room before it reads a frame, and its queue takes
// frames while their buffers hold less than 1 MiB (counting those the
// appender took and is still appending), so it holds at most 1 MiB plus
// two frames. TestConcurrentAgents measures the heap per connection.
//
// Only an agent's Produce may be as large as the max frame
// (Options.MaxFrameBytes); every other frame after the handshake (an
// agent's Heartbeat, every consumer request) is bounded by
// wire.MaxControlFrame (64 KiB). The bound is checked against the frame's
// header (length and type), before any buffer is taken: a client that
// announces a large control frame and then trickles it is refused at once
// (reason "protocol") instead of holding a large pooled buffer for the
// read timeout. A consumer request is small (a Metadata naming 500 topics
// of the longest name still fits).
//
// # Closing with an Error frame
//
// Whenever the server closes a connection with an Error frame (a refused
// Hello, a bad frame, a timeout, an auth refusal), it half-closes the
// connection after it, then reads and drops whatever the client still
// sends until the client closes, for at most one second (errorDrain), and
// only then closes. Closing at once could leave unread bytes (pipelined
// frames, the rest of a refused frame) in the socket, which the kernel
// answers with a reset that can destroy the Error frame before the client
// reads it. At shutdown too, every connection is closed that way, after
// its acks, with an Error frame (unavailable: "aggregator shutting down"):
// a client closes when it reads it, so a shutdown waits that long, and one
// second at most, for the acks to reach the clients.
//
// # Agents
//
// An agent connection is a pipeline of three goroutines, so that reading
// and checking the next batches overlaps the append of this one, and the
// fsync of the appended ones:
//
//	reader ──frames (≤16, <1 MiB)──► appender ──acks (≤256)──► writer
//
// That takes a goroutine wake-up per batch or so, which pays only while the
// connection has cores to itself: a connection opened while more than
// GOMAXPROCS/2 agents are connected runs its reader and appender on one
// goroutine (reads and appends alternate; many connections keep the cores
// busy), which is otherwise the same. Such a connection groups what its
// agent sends faster than it appends too: after each frame, while the
// next one has come whole (in its buffers or its socket's queue: so
// reading it cannot wait), it reads that one as well, up to 16 frames and
// 1 MiB, and then handles them as the appender handles its queue (below).
//
// The reader reads each frame into a pooled buffer and checks it. A frame
// that is not a Produce (or, from version 2, a Heartbeat or an
// AgentReport), a truncated or oversized frame, a batch that batch.Parse
// refuses (CRC, lengths, version) or whose topic is not a valid name, or a
// batch of another agent closes the connection: the reader stops there,
// the frames before it are appended and their acks sent, then an Error
// frame with the reason, which is also logged at WARN. Nothing of a bad
// frame is stored.
//
// The appender takes the frames in order. A valid batch goes to the
// partition of its source (below), where the dedup check and the append
// run under the partition's append lock; the append copies the batch into
// the log and returns without waiting for fsync, and the frame's buffer
// goes back to the pool. The batches it finds queued one after the other
// for the same partition (when the appender is the bottleneck) go
// together: decided in order, each on the state the ones before it leave
// (a duplicate right behind its original is a Duplicate), and written with
// one pwritev (logstore's AppendGroup) instead of one pwrite each, which
// costs the appender less per batch. The outcome goes to the writer, and the appender
// goes on with the next frame while the fsync is in flight. The writer
// acks in that order; before each ack it waits until the batch (for
// Duplicate and Resync: everything the partition held when the batch was
// decided) is durable per the fsync policy (Partition.WaitDurable), so
// concurrent connections share group commits. It flushes when no more acks
// are queued, or before it blocks on an fsync, so acks leave in batches.
//
// The queues wake a waiting goroutine only when it has work worth a
// wake-up (aggregator/queue.go): the reader, waiting for room, once the
// frame queue is half empty; the writer once 8 acks are queued or the
// appender has nothing more to append. Waking a goroutine costs more than
// the work it is handed (tens of microseconds on a virtual machine): with
// a channel between the reader and the appender, that is a wake-up per
// batch, one connection went no faster than without the reader.
//
// An ack that is not Appended has base offset -1. An Append or WaitDurable
// error is acked Failed with the error as message and logged at ERROR.
// After an Append error the aggregator stores nothing more from that
// connection: the batches the agent pipelined behind the failed one would
// leave its range as a gap. The appender drops the frames already read,
// and the reader reads and drops the rest until the agent closes (at most
// 5 s, wire.Conn.LimitReads); if the reader had already stopped, on a bad
// frame or a read error it met reading ahead, the appender does that
// reading. The agent reconnects and resends from its acked positions.
//
// # Partition choice and exactly-once (decision 2 of DESIGN.md)
//
// A source is (topic, agent id from the batch header, source id). Its
// partition is the one it is stored in, when known, else FNV-1a(agent id,
// 0x00, source id as 8 big-endian bytes) modulo Options.Partitions. So a
// source stays in its partition when Options.Partitions changes, and its
// batches stay in order.
//
// The dedup table holds each source's partition and stored end (the range
// end of its last stored batch). New rebuilds it from the log without
// scanning it: each partition keeps a table of its sources (logstore's
// Partition.Sources: the last batch of a source wins), which the log's
// Open restores from a snapshot written at the last segment roll or clean
// Close, replaying only the batches after it (logstore/doc.go, "Source
// state"). A source found in several partitions (logship never does that
// by itself) is pinned to the one with the highest stored end, the lower
// partition id on a tie, with a WARN. For a batch with range
// [RangeStart, RangeEnd), the check, in this order:
//
//	source unknown                      append                 Appended, stored end = RangeEnd
//	RangeEnd <= stored end              don't                  Duplicate, stored end
//	RangeStart == stored end            append                 Appended, stored end = RangeEnd
//	RangeStart < stored end < RangeEnd  don't                  Resync, stored end; the connection marks the source
//	RangeStart > stored end (a gap):
//	  source marked on this connection  don't                  Resync, stored end (a stale batch sent before the agent saw the Resync)
//	  otherwise                         append, log the gap    Appended, stored end = RangeEnd
//
// An Appended batch clears the connection's mark of its source. A gap on a
// connection that was never told to resync is deliberate (the agent skipped
// bytes: a truncated file, a failover from another aggregator), so it is
// stored and logged at INFO with the source and the skipped range. The table
// changes only when a batch is written. The decision, the append and the
// table update happen under the partition's append lock, so two connections
// sending the same source (an agent reconnecting while its old connection
// still drains) are decided one after the other.
//
// The table is never pruned while the server runs. After a restart it holds
// what the partitions' source tables hold: every source with a batch in the
// log, and those whose batches retention deleted, except sources idle for
// longer than the log's SourceStateTTL (default 7 days, measured against
// the partition's newest batch, at each segment roll). The consequence: an
// agent that resends data of a source idle that long (a file it had not
// read from for a week, with its position lost) has it stored again, once.
//
// # Consumers
//
// Requests are served one at a time:
//
//   - Heartbeat (version 2): answered with the same nonce.
//
//   - Metadata: every partition of the named topics (all topics when none is
//     named) with its start and end; unknown topics are absent.
//
//   - Fetch: FetchUnknownPartition for a partition that does not exist,
//     FetchOutOfRange with start and end for an offset outside [start, end];
//     else the stored batches from the one holding the offset, at most
//     MaxBytes (0 or more than the max frame size: the max frame size) but at
//     least one batch. At the end of the log the server long-polls up to
//     MaxWaitMs (capped at MaxFetchWait; shutdown ends it) and answers with
//     what is there, possibly nothing. Only durable batches are served.
//
//   - OffsetCommit: stores a sink's next offset for a partition, durably,
//     before answering, if the commit's epoch is the stored one. Status 0:
//     stored; 1: refused (sink or topic not a valid name, negative offset);
//     2: could not be stored (retry); 3: the epoch is stale (an operator
//     reset the offset; the sink reads Offsets and follows). Offsets never
//     expire.
//
//   - OffsetReset: an operator's new offset for a sink's partition, stored
//     under the partition's epoch plus one, answered like OffsetCommit.
//     When tokens are configured it needs a token with the admin role;
//     from any other the connection is closed with an auth Error frame.
//
//   - OffsetFetch: the sink's committed offsets in a topic, by partition.
//
// With a token limited to some ids, an OffsetCommit, OffsetReset or
// OffsetFetch whose sink is not the Hello's id closes the connection with
// an auth Error frame, a WARN line and the reason "auth", and changes
// nothing: such a token speaks for one sink, and could otherwise move (or
// reset, or read) the offsets of every other sink. An operator's tool that
// resets a sink with such a token connects as that sink. A Status asked
// with such a token lists that sink's offsets only, and no agents.
//
// # Offsets file, version 2
//
// Each sink's committed offsets live in DataDir/offsets/<sink>.offsets, a
// state file (internal/statefile) of kind "offsets", replaced atomically
// (tmp, fsync, rename, fsync dir) on every commit that changes it:
//
//	logship offsets v2 crc32c=<8 hex digits> len=<decimal>\n
//	<body: len bytes>
//
// The CRC32C (Castagnoli) covers exactly the body. The body is a JSON object
// mapping topic to an object mapping partition id (decimal string) to the
// next offset the sink will read (integer >= 0) and the reset epoch, with
// keys sorted:
//
//	{"app":{"0":{"offset":7,"epoch":0},"2":{"offset":150,"epoch":1}}}
//
// Version 1 mapped partition ids straight to offsets ({"app":{"0":7}});
// it is read as epoch 0 and rewritten as version 2 at the next commit.
//
// At startup every <sink>.offsets file is read; leftover temporary files of
// an interrupted write (".<sink>.offsets.tmp-<digits>") are removed. A file
// that is damaged (header, length, CRC, JSON, names, negative offsets) or of
// a newer version stops New with an error naming it, since starting without
// it would silently move that sink; moving the file aside starts the sink
// from its reset policy.
package aggregator
