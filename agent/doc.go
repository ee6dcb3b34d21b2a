// Package agent is the part of logship that runs on every app server: it
// tails log files (the files of one input are one topic) and ships their
// lines, as batches (logstore/batch), over one TCP connection (internal/wire)
// to an aggregator, exactly once (decisions 2 to 4 of DESIGN.md).
//
// # Sources and their identity
//
// A source is one file's content. It is what a batch names (source id and
// byte range) and what the aggregator deduplicates by.
//
//   - On first sight of a file with at least one byte, the agent reads its
//     first K = min(size, 1024) bytes and computes the fingerprint: CRC-64
//     (ECMA) of those K bytes. The source id is FNV-64a over (fingerprint
//     u64, K u32, device u64, inode u64, salt u64, birth time seconds i64,
//     birth time nanoseconds u32), big-endian. The birth time is the file's
//     creation time from statx(2) (STATX_BTIME): it tells apart two files
//     that had the same (device, inode) one after the other (a deleted
//     file's inode reused by a new file that begins with the same header),
//     while the same physical file always gets the same id. The salt is 0,
//     except after a truncation (below), and except where the file system
//     or the platform gives no birth time (birth time 0 then): the salt is
//     then random, so that a reused inode still gives a new id. The id is
//     fixed for the source's life and stored in the positions file. Empty
//     files are not tracked until they have bytes, except a file that the
//     positions file has an entry for (below).
//   - While a file is open it is tracked by (device, inode). On a rescan, a
//     path whose (device, inode) is tracked is the same source: a rename,
//     even to a name the globs still match, only updates its path; nothing
//     is read again.
//   - A file first seen with fewer than 1024 bytes gets its stored
//     fingerprint extended as it grows (the id does not change); if its
//     first K bytes stop matching the fingerprint, it was rewritten under
//     the agent, which is handled as a truncation.
//   - Resuming after a restart. Each positions entry holds, besides the
//     first-bytes fingerprint, a tail fingerprint: CRC-64 of the bytes
//     [pos-tail_len, pos), tail_len = min(pos, 1024), just before the
//     stored position. The rule: a file may resume an entry only if it
//     holds both, that is its first K bytes hash to the entry's
//     fingerprint, its size is at least pos, and its bytes
//     [pos-tail_len, pos) hash to the entry's tail fingerprint. It then
//     resumes at pos, with the entry's id. The new files of the first scan
//     claim entries in two passes. First, each file is matched against the
//     entry of its own (device, inode): if it holds the entry, it resumes
//     it; if not (emptied, shorter than pos, or different bytes before pos:
//     truncated, and maybe grown again, while the agent was stopped; or
//     other first bytes), it is a new, salted source from offset 0, logged
//     at INFO, and the entry stays for the second pass. Then each file
//     left without an entry is matched against the other entries, by the
//     same rule (a copy, such as copytruncate's, or the file itself on a
//     device whose number changed; among several, the same inode wins,
//     then the longest K). So a renamed file and a true copy resume where
//     they were, while a new file that begins like a rotated one (the same
//     header, whether or not the rotated name still matches a glob) or a
//     file truncated and grown again is a new source: the bytes before the
//     position differ.
//   - An entry whose (device, inode) is a file the globs match is never
//     dropped at a restart for being empty: the file was emptied while the
//     agent was stopped. It is tracked while empty, and when it has bytes
//     again it is a new, salted source from offset 0 (otherwise, growing
//     again with the same header, it would get its old id back, and the
//     aggregator would drop its bytes as duplicates).
//   - Rotation by rename: the old file keeps being read through its open
//     descriptor to its end, whatever its name now; the new file at the old
//     path is a new source read from 0. A file is closed once no glob
//     matched it at a scan (renamed away or deleted), it has no complete
//     line left, everything read is acknowledged, and its size did not
//     change since the previous scan (a writer that still holds it gets one
//     scan interval of grace). An incomplete last line is then dropped with
//     a warning.
//   - Truncation: an open file whose size falls below the read position (or
//     whose first bytes change, above) restarts as a new source at offset
//     0, logged at INFO. Its batches in flight stop counting. The new id
//     has a random salt (the time), so that new content that begins like
//     the old one still gets a new id: otherwise the aggregator would take
//     it for a duplicate and drop it.
//
// Limits of this rule, by design: only the first 1 KiB and the 1 KiB
// before the stored position are compared, so a file that matches both is
// taken for the entry's file by a restarted agent, whatever lies between
// (for instance a file truncated while the agent was stopped and rewritten
// with the same header and the same lines around the old position, and
// past it): its bytes before the position are then not shipped. And ids are deterministic only for sources
// first seen with at least 1024 bytes, never truncated, on a file system
// that gives birth times; see "Losing the positions file".
//
// # Reading and batching
//
// One goroutine, the loop, owns the sources, the batches in flight and the
// window. It round-robins the sources; a source is read when a batch is
// due (BatchBytes unread, or its first unread bytes were seen BatchWait
// ago), with big positional reads into one shared buffer; every complete
// line (its bytes as they are, without the newline) is added to one shared
// batch.Builder. A batch covers a contiguous range [RangeStart, RangeEnd)
// of the source, ends at a line boundary (or at a cut of a long line) and
// is built as soon as it holds BatchBytes. An incomplete last line is held
// back (not shipped) until it is complete. A line longer than 1 MiB (less
// under the frame cap, below) is cut into records of 1 MiB (nothing
// dropped). Lines read but not yet due are
// forgotten and read again later: the files are the buffer, the agent
// keeps no lines in memory between turns. When nothing is due the loop
// sleeps on a timer until the next check (PollInterval for idle files).
//
// Frame cap: every batch must fit in one frame of the aggregator it is sent
// to, whose size the Welcome gives (MaxFrame; 0 means the wire default,
// 16 MiB). Each session therefore keeps the records of a batch (their
// encoded size before compression) to raw limit = max(MaxFrame/2, 1 KiB):
// a batch is built at min(BatchBytes, raw limit), a record that would take
// it past the raw limit goes to the next batch, and a line longer than
// min(1 MiB, raw limit - 20) is cut into records of that size, like any
// long line. The other half of the frame covers the batch and Produce
// headers and what compression can add, for any MaxFrame of at least
// 16 KiB (aggregators take no less than 64 KiB). With the default max
// frame this changes nothing. Batches are rebuilt for each session, so a
// failover to an aggregator with a smaller max frame is covered.
//
// # Window and acks
//
// A batch is sent only while the window admits it: unacknowledged file
// bytes plus BatchBytes fit in WindowBytes, or nothing is in flight (so the
// overshoot is at most one long line); at most 4096 batches are in flight.
// A full window stops reading. Acks arrive in order and are matched by seq:
//
//   - Appended or Duplicate: the source's acknowledged position becomes
//     max(acked, stored end, range end). If that is past the read position
//     (the aggregator already had more), reading skips ahead to it.
//   - Resync(stored end): every batch in flight of the source is dropped
//     (a per-source generation makes their acks ignored), its read and
//     acknowledged positions become stored end.
//   - Failed, a connection error, an ack out of order: the session ends,
//     every batch in flight is dropped and every source rewinds to its
//     acknowledged position; connLoop reconnects with exponential backoff
//     (100ms to 5s, jittered) and moves to the next aggregator of the list
//     after two failures in a row.
//   - An Error frame with the protocol code (the aggregator found the
//     agent's input malformed; a frame larger than its max frame is one
//     case, which the frame cap above prevents unless the aggregator
//     announced more than it reads): as a connection error, but logged at
//     ERROR with the sizes of the batches in flight and the announced max
//     frame, since the same batches are sent again and would be refused
//     again; such a session never counts as healthy, so the backoff grows.
//
// # The positions file
//
// StateDir/positions is a state file (internal/statefile: header line with
// kind "positions", version 2, CRC32C and length; written tmp, fsync,
// rename, fsync dir) with a JSON body:
//
//	{
//	  "agent": "web-1",
//	  "sources": [
//	    {
//	      "id": "8c3f0e4a9b1d2c77",          source id, 16 hex digits
//	      "topic": "nginx-access",
//	      "path": "/var/log/nginx/access.log", current path, for people
//	      "dev": 2049, "inode": 1311234,
//	      "fingerprint": "5e0c81a3f2d94b10",  CRC-64 (ECMA) of the first fingerprint_len bytes
//	      "fingerprint_len": 1024,
//	      "salt": "17d2c0f3a91b0001",          only for a source started by a truncation, or without a birth time
//	      "pos": 1048576,                      acknowledged position
//	      "tail_fingerprint": "03b1c2d4e5f60718", CRC-64 (ECMA) of the tail_len bytes before pos
//	      "tail_len": 1024                     min(pos, 1024)
//	    }
//	  ]
//	}
//
// An entry with fingerprint_len 0 (and id 0, pos 0, tail_len 0) is a file
// truncated to nothing that has no new identity yet; it matches only its
// own (dev, inode) and keeps its salt. Positions hold only acknowledged
// offsets: they are written at most every PositionsInterval when something
// changed, and at shutdown. The tail fingerprint is computed when the
// positions file is written, by one read of the bytes before the
// acknowledged position from the file the agent holds open (not per line,
// not per batch); if that read fails (the file just shrank: a truncation
// the loop is about to handle), the entry keeps its previous position and
// tail, so the file lags and never leads. Entries of files that were
// closed (rotated away or deleted, drained and acknowledged) are removed;
// entries that no file matches at the first scan after a start are removed
// too, with a warning (not those whose own file is still there, emptied or
// truncated: see above).
//
// Version 1 files (no tail fingerprint, written by older agents) are read:
// their entries are resumed by (dev, inode) and first bytes as before, but
// never by fingerprint alone in the second pass, since without the tail
// nothing tells a copy from a new file that begins the same way: such a
// file is read from 0 (sent twice if it was a copy, rather than skipped).
// The agent then writes version 2.
//
// # Losing the positions file
//
// A missing positions file is a fresh start. A damaged one (header, CRC,
// JSON, version or values) is renamed positions.broken, logged at ERROR,
// and the agent starts as if fresh, from the beginning of every file: never
// a crash loop. What it sends again is dropped by the aggregator's dedup,
// because source ids are derived from the files deterministically: a file
// gets the same id again, and its batches are Duplicates up to what the
// aggregator has stored. The exceptions, which are then delivered twice
// rather than lost: sources first seen with fewer than 1024 bytes (their K
// differs on the second first sight), sources started by a truncation
// (their salt is lost), and every source on a file system or platform
// without birth times (their random salt is lost). Sources first seen by
// an agent older than the birth-time rule also get a new id, once.
//
// # Shutdown
//
// When Run's context is done, reading stops, the agent waits up to 5s for
// the acks of the batches in flight, writes the positions file with the
// acknowledged positions and closes everything. Batches not acknowledged
// by then are sent again after the restart, and dropped by the aggregator
// if it had stored them.
//
// # Not yet
//
// This first version polls (no fsnotify), does not recognise copytruncate
// while it runs (the copy is read as a new file and the truncated file
// starts a new source: the copied lines are sent twice; only a restarted
// agent resumes a copy at its original's position), has no multiline rules, no limit on open
// files, no timeout for incomplete last lines, no drain timeout for
// deleted files held open under backpressure, no ack timeout beyond TCP
// keepalive, no lock on the state directory, and no metrics besides Stats.
// nxadm/tail is not used: it tracks files by path and offset, not by
// (device, inode) and fingerprint, cannot read a file from an exact offset
// again after a rewind, and reads line by line through a channel, which
// the performance model rules out.
package agent
