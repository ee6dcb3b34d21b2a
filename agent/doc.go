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
//     matched it at a scan (renamed away or deleted), it has nothing left
//     to read (an incomplete last line is shipped after PartialTimeout),
//     everything read is acknowledged, and its size did not change since
//     the previous scan (a writer that still holds it gets one scan
//     interval of grace). A file rotated twice between two scans (created
//     and renamed out of the globs before a scan saw it) is found through
//     the rename's file event: a file renamed from a name the globs match,
//     or from a tracked file's name, is followed to its new name, whatever
//     it is. The renames the loop takes at once are a chain: a name that
//     an earlier rename of the batch filled counts as well (rotated three
//     times before the loop took the events, a shift rotation moves the
//     file created as app.log on from .1 to .2). A rename to the (device,
//     inode) of a file closed lately (up to two scan intervals) is a late
//     event of that file and is not followed, unless its first bytes or
//     its birth time (without birth times: its size) differ: a new file on
//     the reused inode of a deleted one (birth times come from a coarse
//     clock, and one created within a tick of the other has the same).
//     Without file events (polling only) such a file is not seen.
//   - Truncation: an open file whose size falls below the read position,
//     whose first bytes change (above; checked at every scan too, whatever
//     the file's length), or whose 64 bytes just before the read position
//     are no longer those the tailer read there (a truncation followed by
//     growth past the read position between two looks; checked before
//     every read and at every scan) restarts as a new source at offset 0,
//     logged at INFO. A resumed source is checked the same way before its
//     first read, against the bytes of its entry's tail fingerprint (so a
//     file truncated and grown again while the agent waits for an
//     aggregator is caught). When the read position moves other than by
//     reading (rewound to the acknowledged position when a session ends,
//     Resync, skip ahead, topic switch), the file is checked where the
//     read position was, and the bytes before the new one are taken as the
//     check's reference. Its batches in flight stop
//     counting. The new id has a random salt (the time), so that new
//     content that begins like the old one still gets a new id: otherwise
//     the aggregator would take it for a duplicate and drop it. A file
//     rewritten before anything was shipped under its identity (no batch
//     built, not resumed from the positions file) gets the identity of
//     what it holds now. Once a batch was sent, a change of the first
//     bytes is a truncation (with a ghost, below) even at read position
//     0: batches sent and stored, but not acknowledged before the
//     connection dropped, rewind the read position to 0, and the copy
//     must resume their identity, not ship them again under a new one.
//   - A new identity (a file seen for the first time, a truncation) is
//     written to the positions file before any byte is shipped under it:
//     a crash cannot then give the same content another id after a
//     restart (which would send it twice).
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
// # copytruncate
//
// logrotate's copytruncate copies the file to a new name and then
// truncates the original in place. While the agent runs:
//
//   - When a source is truncated, its identity and its last position whose
//     tail was fingerprinted (at the last positions write) are kept for
//     max(5×ScanInterval, 10s) as a ghost, also written to the positions
//     file (device and inode 0: only a copy can claim it after a restart).
//   - A new file of the same topic that holds the ghost's content (first
//     bytes, length, the bytes before the position: the restart rule)
//     resumes the ghost's source there, under its id; what it sends again
//     up to what was acknowledged, the aggregator drops as duplicates. A
//     file born after the truncation was seen (by its birth time, where
//     the file system gives one) is not a copy and never claims a ghost:
//     otherwise a file that begins with the same header would take the
//     ghost of one truncated while it held only that header. One created
//     within 50ms after it is not told apart: the file system's clock can
//     be a few ms ahead of the agent's. (A ghost read back from the
//     positions file after a restart has no such check: the restart rule
//     alone applies.)
//   - A new file whose bytes so far are a live source's (its first bytes,
//     and its last bytes at the same offsets, or the source's file is now
//     shorter), or the first bytes of a ghost, may be a copy in progress:
//     it is held open and unread while it grows and for max(2×ScanInterval,
//     1s) after, so that the truncation that follows a copy can turn the
//     source into the ghost it is matched against. Each scan looks for
//     truncations before it looks at new files. A held file that turns
//     out to be no copy is then a new source (a file that begins like a
//     live one, such as a CSV file with the same header, can thus wait up
//     to that long before it is read, but only while its bytes are the
//     other file's).
//   - A ghost whose copy never shows up (the rotated name is outside the
//     globs, or a plain truncation) is forgotten; the bytes the file had
//     past the read position when it was truncated are given up: logged
//     with the file name and counted in Stats.GivenUpBytes. So are the
//     bytes of its batches that were in flight at the truncation and
//     were not stored: their session ended before their ack (they may
//     have been stored: counted anyway, an overestimate rather than a
//     silent loss), or their ack was neither Appended nor Duplicate. Such
//     a batch settled after its ghost expired is given up then; one whose
//     ghost a copy claimed is not (the copy sends it again).
//
// The unavoidable window: lines the application writes after the copy has
// read the file's end and before the truncation are in neither file. No
// reader can get them back; logrotate's own documentation says so. The
// window is as long as the copy's last read plus the truncate call; keep
// it small by letting the glob match the rotated name (so nothing else
// depends on the agent having read the original before the truncation),
// or use rename rotation, which has no window.
//
// # Reading and batching
//
// One goroutine, the loop, owns the sources, the batches in flight and the
// window. It round-robins the sources; a source is read when a batch is
// due (BatchBytes unread, or its first unread bytes were seen BatchWait
// ago), with big positional reads into one shared buffer; every complete
// record (see Records) is added to one shared batch.Builder. A batch
// covers a contiguous range [RangeStart, RangeEnd) of the source, ends at
// a record boundary and is built as soon as it holds BatchBytes. Records
// read but not yet due are
// forgotten and read again later: the files are the buffer, the agent
// keeps no lines in memory between turns. When nothing is due the loop
// sleeps on a timer until the next check (PollInterval for idle files).
//
// The loop only cuts records: a full batch's records go to a pool of
// Compressors goroutines (default GOMAXPROCS) that compress batches in
// parallel, and the session's writer sends them in the order they were
// cut; see compress.go. The queue to the pool is unbuffered: a batch
// waits in the loop until a compressor is free, so a slow pool stops the
// loop from reading, like a full window, and at most Compressors+1 raw
// batches are in memory.
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
// # Records
//
// A record is a contiguous range of the file: its bytes as they are,
// without the newline that ends it (the range of a batch is its records'
// bytes plus one newline per record that had one).
//
//   - One line is one record. A line longer than MaxLineBytes (default 1
//     MiB; less under the frame cap, below) is cut into records of that
//     size: nothing is dropped, each cut is counted in
//     Stats.RecordsSplit, and the first per file is logged with the limit
//     that cut it and its value (max_line_bytes, multiline.max_lines,
//     multiline.max_bytes, or the aggregator's max frame where that is
//     lower; see below).
//   - A last line without its newline is held back, unread, until it is
//     complete, or until the file has not changed for PartialTimeout
//     (default 5s): it is then shipped as it is, and what completes it
//     later is a record of its own. A read position that goes back (a
//     lost session, a Resync) does not restart that timer: the same held
//     bytes found again are due when they were.
//   - Multiline (per input): with Match "start", a line that matches the
//     pattern (or does not, with Negate) starts a record and the lines
//     that follow and do not start one join it; with "continuation", a
//     line that matches continues the record before it. The lines of a
//     record keep their newlines between them. A record is closed by the
//     next line that does not continue it, or, for the last record of a
//     file, when the file has not changed for the rule's Timeout (default
//     1s), whether PartialTimeout is shorter or longer (an incomplete line
//     after it may be its next line). A record that would pass MaxLines
//     (default 500) or MaxBytes (default MaxLineBytes) is cut there
//     (counted); the rest starts the next record. A line longer than
//     MaxLineBytes is never joined: each of its pieces, the last one
//     included, is a record of its own (so is what completes a partial
//     line shipped at its timeout). Like everything else, a pending
//     record is not kept in memory: it is read again on the next turn.
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
//     after two failures in a row. The batches a session leaves
//     unacknowledged (those in flight when it ends, less those a Resync or
//     a truncation dropped) are sent again by the next session; the loop
//     records them when it takes the session down, and connLoop waits for
//     that before it decides anything, so that its failover line gives
//     their number and file bytes (resend_batches, resend_bytes; with
//     unacked_by when they were left at another aggregator than the one
//     it leaves, after failovers in a row). Sent to another aggregator
//     than the session's, they are stored twice where that one had stored
//     them (wire/doc.go, "Failover and exactly-once across aggregators"):
//     their bytes are counted in ConnStats.FailoverResentBytes
//     (logship_agent_failover_resent_bytes_total) when the session with
//     the other aggregator starts. What a stopped agent had in flight is
//     not known after its restart, and not counted.
//   - Away from its home aggregator (the list entry its id hashes to),
//     connLoop looks about once a minute (jittered) whether home takes a
//     connection (a dial and a handshake). When it does, the loop sends
//     nothing more on the session, waits until every batch in flight is
//     acknowledged, writes the positions file (if that fails, it stays and
//     sends on, and moves at a later look), ends the session, and connLoop
//     dials home: a batch the other aggregator may have stored is never
//     sent home too. Home sees each source go on after a gap (what went
//     elsewhere meanwhile). Each source remembers how far it sent to the
//     current aggregator (sentHigh, acknowledged or not; it outlives a
//     lost session and is forgotten when the agent changes aggregator),
//     and so do the entries
//     a file may resume from (a copytruncate's ghost, an entry a reload
//     released). The move is held off (moveSafe) while a source sent more
//     than is acknowledged or in flight, or such an entry lies below what
//     was sent: a file resuming there sends those bytes again, which this
//     aggregator drops as duplicates and home would store. A resumed
//     file's sentHigh is capped at its size (a copy ends where logrotate
//     copied). A probe gives up as soon as the current session ends.
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
//	  "aggregator": {"addr": "10.0.0.2:7400", "id": "agg-2"}, that of the last session
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
//	      "tail_len": 1024,                    min(pos, 1024)
//	      "draining": false                    whether no glob matched the file (rotated away); absent in older files
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
// closed (rotated away or deleted, drained and acknowledged) are removed.
// An entry says whether it is draining: no glob of the config matched its
// file as it was written (rotated away, not yet drained). An entry that no
// file the globs match claims at the first scan after a start is looked
// for by its own (dev, inode), at its path and else in the same directory,
// and resumed only if that file still holds its content (first bytes, and
// the tail before the position): if the file was renamed since the stop (a
// rotation while the agent was stopped; not to a name the input excludes),
// or if it is at its path and the entry is draining (rotated away before
// the stop). It is then drained as a rotated file is (Rotation by rename
// above; DrainTimeout counts from the start) and closed; if max_open_files
// leaves no room, its unread bytes are given up, logged and counted. A
// file still at its path whose entry is not draining was left by a change
// of the config (an exclude, a narrower glob): it is read no further, as
// after a reload, and that is logged. While its own file holds its content
// under a name no glob matches, an entry is never given to another file by
// content (a new file that begins with the same header is new). The entry
// of a file that waits for room under max_open_files stays with that file
// until it is opened. An entry whose own file was truncated or rewritten
// while the agent was stopped (it starts again as a new source: see above)
// may have left its content in a copy no glob matches (copytruncate to
// app.log.1 with *.log): an untracked file in the same directory that
// holds the entry's content is resumed and drained the same way, if it is
// the only one (an older rotation that begins with the same header holds
// it too when the position is inside the header: then none is read, and
// that is logged); without one, a warning says that the lines past the
// position, if any, are not shipped. Entries found nowhere are removed,
// with a warning. The draining field needs no new version: older agents
// ignore it, and an entry without it (written by an older agent) is taken
// as draining, so that a file the older agent had followed out of the
// globs is drained, not dropped.
// The positions file is also written, at once, before anything is shipped
// under a new identity (see above), and before anything is sent to an
// aggregator other than the one it names (its address in the list, and
// the id from its Welcome); while that write fails, nothing is sent. It
// holds the ghosts of truncated files (see copytruncate) as entries with
// device and inode 0.
//
// "aggregator" is optional (files of older agents lack it; they are read
// as naming none, and older agents ignore it). A restarted agent dials
// the aggregator it names first, when it is still in the list: that one
// may hold batches past the positions that it never acknowledged (a
// crash, or a stop whose acks did not come), which it drops as
// duplicates, while any other aggregator would store them again. If that
// one is down (failoverAfter failures before a healthy session), the
// agent fails over home. If it is not home, the move home (see "Window
// and acks") waits as usual, with every resumed source taken to have been
// sent to its file's end before the restart: the agent moves once it has
// been acknowledged that far.
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
// # Discovery, file events and bounds
//
//   - Globs are expanded every ScanInterval. With file events (fsnotify,
//     on by default; NoWatch turns them off) the directories of the globs'
//     literal prefixes and of the open files are watched: a file created,
//     renamed or removed starts a scan at once, a written file is read at
//     once instead of at its next poll, and renames are followed (above).
//     Polling (PollInterval) and the periodic scan stay, as the fallback
//     where events are not available (inotify limits, network file
//     systems) and as the safety net for events lost in an overflow.
//   - Symbolic links matched by a glob are followed to their target; a
//     target matched twice (directly and through a link) is one source,
//     matched by its (device, inode). A "**" walk does not descend into
//     links to directories.
//   - IgnoreOlder (per input) skips a file seen for the first time whose
//     modification time is older; it is picked up when written again. A
//     file with a positions entry of its own is always resumed.
//   - MaxOpenFiles (default 1024) bounds the open files, held copies
//     included. Files found beyond it are not opened: they wait, counted
//     in Stats.FilesWaiting and logged once, until others are closed. A
//     waiting file is remembered by (device, inode) and birth time: one
//     renamed to a name the globs still match is the same waiting file
//     under its new name, and one renamed out of the globs (seen through
//     the rename's file event) waits like a rotated file, up to
//     DrainTimeout, and is opened when there is room. One deleted, or
//     rotated away where no event followed it, before it could be opened
//     (missing from its name at two scans in a row), or whose inode a new
//     file took, is given up: its size is logged at WARN with its name
//     and counted in Stats.GivenUpBytes. One emptied while it waited is
//     logged (its bytes may be in a copy: copytruncate), not counted.
//   - DrainTimeout (default 24h) bounds how long a file no glob matches
//     any more (rotated away, deleted) is kept open to be drained. Past
//     it, the bytes not acknowledged are given up: logged at WARN with the
//     file name and counted (Stats.GivenUpBytes, and per source), never
//     silently; the file is closed, which frees a deleted file's space.
//
// # The state directory lock
//
// New takes an exclusive flock(2) on StateDir/lock, and fails naming the
// directory if another process holds it: two agents sharing a state
// directory would overwrite each other's positions. The lock goes with the
// process (a crash releases it); Run releases it when it returns.
//
// # Reload
//
// Reload (SIGHUP in cmd/logship) replaces the inputs of a running agent:
// files of added inputs are new files; files of kept inputs (same topic
// and paths) keep their sources and positions and take the new settings;
// files of removed inputs are read no further, and are closed (and leave
// the positions file) once their batches in flight are acknowledged; a
// file now matched first by an input of another topic goes on under that
// topic from its acknowledged position once nothing of it is in flight.
// The entry of a file closed for its removed input is kept aside, in
// memory (at most MaxOpenFiles of them): if a later reload matches the
// file again, it resumes that entry by the restart rule (its own device
// and inode, first bytes, the bytes before the position), under its id,
// from its position; a file that no longer holds the entry's content is
// a new, salted source from 0. A restart forgets them. Files held as
// possible copies (copytruncate) are let go at a reload and found again
// by the scan under the new inputs.
// Invalid inputs are refused with every problem and the running ones stay.
// Other options need a restart.
//
// # Metrics
//
// Stats holds the totals and, per open file (Stats.Sources), the bytes
// read into batches, the acknowledged position, the size at the last look,
// the lag (size minus acknowledged position) and the bytes given up. The
// loop publishes them when it looks at a file; Stats reads them with
// atomics, from any goroutine. ConnStats holds the connection's state and
// counters: the aggregator it is on (Aggregators lists every one it may
// be, for a series per aggregator), connects and their failures,
// failovers, sessions lost, heartbeats, and the bytes sent again to
// another aggregator after a failover (FailoverResentBytes, see "Window
// and acks").
//
// # Shutdown
//
// When Run's context is done, reading stops, the agent waits up to 5s for
// the acks of the batches in flight, writes the positions file with the
// acknowledged positions and closes everything. Batches not acknowledged
// by then are sent again after the restart, and dropped by the aggregator
// if it had stored them: a restarted agent dials first the aggregator it
// last sent to, which the positions file names (see above).
//
// # Testing
//
// Tests use real files, the real aggregator in process (or the fake one
// of fake_test.go where a test needs faults), lines with sequence numbers,
// and wait on conditions. The timer-driven tests (partial_timeout,
// multiline Timeout, drain_timeout) run on the real clock, not in a
// testing/synctest bubble: the agent's connection is real TCP
// (wire.Dialer, no dial seam) and the file watcher blocks reading the
// inotify descriptor; a goroutine blocked in such I/O is not durably
// blocked, so the bubble's clock would never advance. They are written
// so that a slow machine only makes them slower (a record shipped after
// its timeout is checked against the time it was written, never
// before). A dial seam that takes net.Pipe, with NoWatch, would let
// them move into a bubble. TestAggregatorStoppedAndRestarted stops the
// aggregator for 2s, and for the 30s of issue 4 with -tags slow (make
// soak).
//
// # Not yet
//
// No ack timeout beyond TCP keepalive. Without file events (polling
// only), a file created and renamed out of the globs between two scans is
// not seen.
//
// nxadm/tail is not used: it tracks files by path and offset, not by
// (device, inode) and fingerprint, cannot read a file from an exact offset
// again after a rewind, and reads line by line through a channel, which
// the performance model rules out. The agent owns its reader.
package agent
