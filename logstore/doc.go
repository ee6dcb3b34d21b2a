// Package logstore is logship's partitioned, segmented on-disk log: the
// aggregator appends batches (see package batch) to a partition, sinks read
// them back by offset. The batch bytes are stored exactly as the agent built
// them, except for the 21-byte prefix the aggregator stamps (base offset,
// append time, header CRC): the store never decompresses anything.
//
// # Directory layout
//
//	<dir>/LOCK                                  flock held while a Store is open
//	<dir>/CHECKPOINT                            recovery point and clean mark of every partition
//	<dir>/<topic>-<id>/                         one directory per partition
//	<dir>/<topic>-<id>/<base>.log               segment: batches with offsets from <base>
//	<dir>/<topic>-<id>/<base>.index             sparse offset index of that segment
//	<dir>/<topic>-<id>/<base>.timeindex         sparse time index of that segment
//	<dir>/<topic>-<id>/<base>.log.broken[.N]    bytes cut from a torn tail, for people
//	<dir>/<topic>-<id>/<off>.snapshot           the partition's source table as of offset <off>
//
// <base> is the segment's base offset (the offset of its first record),
// written as 20 decimal digits with leading zeros so that names sort in
// offset order. A topic may contain '-': the partition id is what follows
// the LAST '-'. Entries that do not parse are logged and left alone.
//
// # Segment file, version 1
//
// All integers are big-endian. A segment starts with a 32-byte header, then
// holds whole batches back to back, each exactly as package batch lays it
// out (the batch carries its own length and two CRC32Cs):
//
//	offset  size  field
//	     0     4  magic          "LSSG"
//	     4     1  version        1
//	     5     3  reserved       zero; covered by the CRC, ignored by readers
//	     8     8  base offset    must equal the offset in the file name
//	    16    12  reserved       zero; covered by the CRC, ignored by readers
//	    28     4  header CRC     CRC32C (Castagnoli) of bytes [0, 28)
//	    32     .  batches        batch i+1 starts where batch i ends; the base
//	                             offset of batch i+1 is base(i) + count(i),
//	                             and the first one's is the segment's base
//
// The header is written and fsynced when the segment is created, before any
// batch, so a header that fails its CRC in a file holding batches is damage,
// never a torn write. A segment is at most Options.SegmentBytes long, except
// that a single batch larger than that gets a segment of its own.
//
// # Index file, version 1
//
// The index is derived data: it can always be rebuilt from its segment.
// It starts with a 32-byte header laid out like the segment header (magic
// "LSIX", version 1, the same base offset, CRC32C of bytes [0, 28)), then
// holds 12-byte entries:
//
//	offset  size  field
//	     0     4  relative offset   batch base offset - segment base offset
//	     4     4  position          byte position of that batch in the .log
//	     8     4  entry CRC         CRC32C of bytes [0, 8) of the entry
//
// Entries are strictly increasing in both fields. One is added for a batch
// when at least Options.IndexIntervalBytes have been appended since the last
// entry (or since the segment header); the first batch of a segment needs
// none. To find offset o: binary search the segments by base offset, then
// the entries for the last one with base+relative <= o, then walk forward
// batch by batch reading only the 29-byte batch prefixes (batch.CheckPrefix)
// to the last batch whose base offset is <= o. Positions are 32 bits, so
// SegmentBytes is at most 4 GiB - 1; a segment also rolls before a relative
// offset would pass 32 bits.
//
// The index of the active segment lives in memory; its file is written
// whole and atomically (tmp, fsync, rename, fsync dir) when the segment is
// sealed by a roll and when the Store is closed. No index write ever sits
// on the append path. The same goes for the time index; both files are
// written together, with one fsync of the directory.
//
// # Time index file, version 1
//
// Derived data too, rebuilt from its segment when it is missing or wrong.
// It maps append times to offsets. A 32-byte header laid out like the
// others, with the number of entries in bytes [16, 20), so that a file cut
// at an entry boundary is refused too:
//
//	offset  size  field
//	     0     4  magic          "LSTI"
//	     4     1  version        1
//	     5     3  reserved       zero; covered by the CRC, ignored by readers
//	     8     8  base offset    must equal the offset in the file name
//	    16     4  entry count    number of 16-byte entries that follow
//	    20     8  reserved       zero; covered by the CRC, ignored by readers
//	    28     4  header CRC     CRC32C of bytes [0, 28)
//	    32     .  entries
//
// then 16-byte entries:
//
//	offset  size  field
//	     0     8  append time       unix milliseconds, signed
//	     8     4  relative offset   base offset of the batch - segment base offset
//	    12     4  entry CRC         CRC32C of bytes [0, 12) of the entry
//
// An entry says: the batch at this relative offset was appended at this
// time (so, append times being monotonic, every batch before it at or
// before it, every batch after it at or after it). The first entry is the
// first batch (relative offset 0); then one is added with each offset
// index entry whose batch's append time is greater than the last entry's;
// a sealed segment's last entry is its last batch (added when it is
// sealed, unless the entry before has that time). Both fields increase
// strictly. The first batch at or after time t lies after the last entry
// before t and at or before the first entry at or after it.
//
// Append times are the aggregator's clock when it appends (batch.Stamp),
// clamped so they never go back within a partition: a batch gets
// max(now, the previous batch's append time), also across restarts (Open
// takes the greatest append time found). A wall clock that steps back
// therefore stalls append times until it catches up, and the index stays
// monotonic (KAFKA-6662). The records' own timestamps (batch FirstTime and
// LastTime) come from the agents' clocks and never drive rolling,
// retention or seeking.
//
// Partition.OffsetForTime(t) returns the first batch appended at or after
// t: binary search the segments by last append time (kept in memory for
// every segment), then the time index for the two entries around t, then,
// over the offset index entries between them, binary search reading one
// batch prefix each (it holds the append time), then walk at most one
// index interval of batch prefixes. When no batch is that recent it
// returns End.
//
// Recovery: Open checks a sealed segment's time index after its offset
// index, reading only its header and its first and last entries whatever
// its size: the header CRC, a size that matches the entry count, the two
// entries' CRCs and order, a first entry equal to the first batch's append
// time and a last equal to the last batch's (found by the same walk from
// the last offset index entry, reading batch prefixes only). Anything
// wrong, or a missing file, rebuilds both index files from a scan of the
// segment (WARN "rebuilding time index"); damage that scan finds is a
// *CorruptionError. Every entry is checked (CRC, order) when the segment
// cache first loads the index for a lookup by time, which rebuilds both
// files then if one fails (WARN "rebuilding indexes"); so does an offset
// index that fails when the cache loads it. The active segment's time
// index is rebuilt in memory by the scan of the last segment.
//
// # Segment lifecycle
//
// A partition's last segment is active: it takes the appends, its file is
// always open and its indexes live in memory. Append writes one batch with
// one pwrite; AppendGroup writes several (what a server has queued) with
// one pwritev per run of them that fits the segment, leaving the same
// bytes as Append called for each in turn. A failed write is cut back to
// where it began (or, when even that fails, the partition fails), so a
// write never leaves part of a batch behind a later one. It is sealed (fsynced, its
// index files written, see "Durability") and a new one created when:
//
//   - the next batch would take it past Options.SegmentBytes;
//   - the next relative offset would pass 32 bits;
//   - its first batch is Options.SegmentMaxAge old (default 1h). The age
//     counts from the first batch's append, not from the file's creation,
//     so an empty segment never rolls and a restart does not make a
//     segment young again (a segment found at Open counts from its first
//     batch's append time). It is checked on append, and by the Store's
//     one upkeep goroutine, which wakes when the next active segment is
//     due (or at most every SegmentMaxAge), so an idle partition's data
//     is sealed too and can expire.
//
// Every segment, open or not, has O(1) metadata in memory: base offset,
// size, the offset after its last batch, first and last append time (a
// few hundred bytes). A sealed segment's file and offset index are opened
// only when a reader needs them (its time index only for a lookup by
// time), through a cache shared by the Store that keeps at most
// Options.MaxOpenSegments (default 128) sealed segments open and closes
// the least recently used. Each reader holds a reference
// while it reads (Read, Scan, OffsetForTime) or until it releases a Slice
// (ReadSlice); an evicted segment still referenced stays open until the
// last release. So open files are one per partition plus
// MaxOpenSegments plus those in use, and index memory is at most
// MaxOpenSegments times a segment's indexes (for 1 GiB segments and
// 4 KiB intervals, about 2 MiB each), however many segments exist. Open
// checks sealed segments one at a time and closes them again. Nothing is
// mmapped, so vm.max_map_count is never a concern (KAFKA-6343).
//
// Retention deletes whole sealed segments, oldest first, never the active
// one:
//
//   - by age: a segment whose last append time is older than
//     Options.RetentionAge (default 7 days). It goes by append time, never
//     by the records' timestamps, so records stamped in the future cannot
//     keep a segment forever (KAFKA-20609). Append times grow from segment
//     to segment, so the first one that is young enough ends the search;
//   - by size: while the partition's segments hold more than
//     Options.RetentionBytes (default 0: no limit), so after a check a
//     partition holds at most that much, plus its active segment when
//     that alone is bigger.
//
// The upkeep goroutine enforces retention every
// Options.RetentionCheckInterval (default 1 min); Store.EnforceRetention
// does it on demand. A deletion takes the segment off the partition's list
// and moves Start (under the partition's locks, so no new reader finds
// it), then removes its time index, index and segment files in that order
// (a crash in between leaves a segment without indexes, which Open
// rebuilds and the next check deletes), fsyncs the directory and logs the
// segment and the reason at INFO. A reader that holds the segment keeps
// reading it to its end: its descriptor keeps the unlinked file.
//
// # Reads
//
// Read(offset, maxBytes) copies whole batches from one segment into a new
// buffer. ReadSlice returns the same range as a Slice (file, position,
// length), for Slice.WriteTo to send with sendfile(2) to a TCP connection
// (with an explicit offset, so readers sharing a descriptor never share a
// file position; with pread and write to anything else). A Slice keeps its
// segment open, even once deleted, until Release.
//
// # Durability
//
// Options.Fsync decides when appended bytes count as durable:
//
//   - always: WaitDurable returns once the bytes are fdatasynced. Concurrent
//     waiters share one fdatasync (group commit): the first waiter syncs
//     everything written so far, those that arrive meanwhile wait for it and
//     then share the next one.
//   - interval: a goroutine owned by the Store fdatasyncs every partition
//     with unsynced bytes every Options.FsyncInterval.
//   - never: the OS writes pages back when it likes.
//
// End() is the durable end: readers never see a batch before it is durable
// per the policy (with interval and never, a batch is visible once written).
// Whatever the policy, a segment is fdatasynced, and its index written, when
// it is sealed, and the last segment when the Store is opened and closed, so
// only the last segment of a partition can ever have a torn tail. A failed
// fdatasync poisons the partition (ErrFailed): the kernel may already have
// dropped the dirty pages, so nothing later may claim durability.
//
// # Checkpoint file, version 1
//
// <dir>/CHECKPOINT records, for every partition, its recovery point and
// whether Close left it clean. It is replaced atomically (tmp, fsync,
// rename, fsync dir), never written in place: by Open, once every
// partition is recovered and before any append (which clears every clean
// mark: a clean mark is never true for a store that is open); by a
// goroutine of the Store every Options.CheckpointInterval (default 1
// minute) and soon after every segment roll, when anything changed; and by
// Close, after every partition is closed, with the clean mark set for
// those that closed without error. All integers are big-endian:
//
//	offset  size  field
//	     0     4  magic          "LSCP"
//	     4     1  version        1
//	     5     3  reserved       zero; covered by the CRC
//	     8     4  count          number of entries
//	    12     .  entries        sorted by topic, then partition id; no duplicates
//	     .     4  CRC            CRC32C (Castagnoli) of every byte before it
//
//	entry:
//	     0     2  topic length   n
//	     2     n  topic          a valid name
//	   2+n     4  partition id
//	   6+n     1  flags          bit 0: clean; the other bits are zero
//	   7+n     8  segment        S: base offset of the recovery point's segment
//	  15+n     8  position       P: bytes [0, P) of segment S ...
//	  23+n     8  offset         N: ... are whole batches ending at offset N
//
// The recovery point (S, P, N) promises: every segment before S is sealed
// (fsynced, its index files written), and bytes [0, P) of S are fsynced
// whole batches that end at offset N. It only ever records what an fsync
// made durable: it moves with every fsync of the partition (group commit,
// the interval flusher, a roll, Close) and into a new segment once a roll
// has created it (header and directory entry fsynced). The clean mark adds:
// S is the last segment, P its size and its index files are current (and
// the snapshot at N is written, unless that failed and was logged: Open
// then falls back as for a damaged snapshot).
//
// # Source state
//
// Each partition keeps a source table: for every (agent id, source id)
// found in its batch headers, what the source's last batch says: its range
// end, the offset of its last record and its append time (SourceKey,
// SourceState). Append updates it under the append lock;
// Partition.Sources returns a copy. The aggregator rebuilds its
// exactly-once state from it at startup (decision 2 of DESIGN.md;
// aggregator/doc.go), without reading the log.
//
// The table survives restarts through snapshots, <off>.snapshot, each the
// table as of offset <off> (the effect of every batch below it): one at
// every roll, <base>.snapshot of the new segment, written under the append
// lock once that segment exists; and one at the end when Close closes the
// partition. Each is written atomically (tmp, fsync, rename, fsync dir).
// The newest 3 are kept: older ones are removed, as are those below Start
// (retention deleted the batches a replay from them would need; retention
// removes <base>.index and <base>.timeindex with their segment, and the
// snapshot of a deleted segment goes at the next snapshot write or Open). A
// snapshot that cannot be written is logged at WARN: the data is safe, and
// Open falls back to an older one.
//
// Pruning: at every roll, before the snapshot, the sources whose last
// append is more than Options.SourceStateTTL (default 7 days) older than
// the partition's newest append are dropped. Measured against the log's
// own append times at segment boundaries, never the wall clock, so a table
// rebuilt from the log (from an older snapshot, or from the first segment)
// is exactly the one the partition had. The consequence: an agent that
// resends data of a source idle for that long (say a file whose position
// it lost) has it stored again, once; the aggregator no longer knows the
// source. The same happens to sources whose batches retention deleted when
// no snapshot at all is usable at Open.
//
// # Snapshot file, version 1
//
// All integers are big-endian:
//
//	offset  size  field
//	     0     4  magic          "LSSN"
//	     4     1  version        1
//	     5     3  reserved       zero; covered by the CRC
//	     8     8  offset         the table holds every batch below it; equal to the name
//	    16     8  newest append  greatest append time (unix ms) of those batches: pruning's clock
//	    24     4  count          number of entries
//	    28     .  entries        sorted by agent id, then source id; no duplicates
//	     .     4  CRC            CRC32C (Castagnoli) of every byte before it
//
//	entry:
//	     0     2  agent length   n (at most batch.MaxStringLen)
//	     2     n  agent id
//	   2+n     8  source id
//	  10+n     8  range end      >= 0
//	  18+n     8  last offset    offset of the last record of the source's last batch; < offset
//	  26+n     8  append time    of that batch, unix ms; <= newest append
//
// # Recovery
//
// Open recovers every partition before it returns. How much it reads
// depends on what CHECKPOINT says of the partition (see "Checkpoint file"):
// a clean mark, a recovery point (S, P, N), or nothing (no file, a damaged
// file, which is logged at WARN and ignored, or a partition created since).
// Always:
//
//   - Leftover *.tmp files (an interrupted index, snapshot or checkpoint
//     write) are removed: never trusted.
//   - Every segment header is checked (magic, version, CRC, base offset
//     equal to the name). The last segment, if it is no longer than a header,
//     its header is bad and it lies after S, was torn while being created
//     (no batch can have been acknowledged in it): it is moved aside as
//     .broken and the one before becomes the last. Any other bad header is a
//     *CorruptionError.
//
// After a clean shutdown, nothing is scanned: no batch body is read. The
// sealed segments are trusted (below), and so is the last one when its
// size is P, its offset index decodes, a walk over batch prefixes from its
// last index entry ends at offset N, and its time index agrees with its
// first and last batch; the source table is the snapshot at N. When any of
// that fails, it is logged at WARN and the partition is recovered as after
// an unclean shutdown.
//
// After an unclean shutdown, the segments before S are trusted; S and the
// segments after it (normally S is the last one) are verified: a sealed
// one as if nothing vouched for it, the last one by a scan. With no
// recovery point, every sealed segment is verified and the last scanned.
// The checks:
//
//   - A trusted sealed segment: its offset index header and last entry must
//     check (CRCs, a whole number of entries, the last one inside the
//     file), and a walk from that entry, reading only the first 35 bytes of
//     each batch (prefix with its header CRC, and the record count), must
//     reach the exact end of the file with contiguous offsets that end at
//     the next segment's base offset. Otherwise (logged at WARN) it is
//     verified. The other index entries are checked (CRCs, order) when a
//     reader first needs the index; one that fails is rebuilt then (see
//     "Segment lifecycle"). So Open reads no more of a trusted segment
//     however large it is.
//   - A verified sealed segment: the same, but the walk reads whole batches
//     and checks both CRCs. A missing or bad index, or a walk that fails,
//     rebuilds the index from a scan of that segment (WARN "rebuilding
//     index") and rewrites it; damage that scan finds is a *CorruptionError.
//   - The time index of a sealed segment: see "Time index file".
//   - The last segment, scanned batch by batch: batch.CheckPrefix, a full
//     batch.Parse, and contiguous base offsets. At the first batch that
//     fails, the tail is cut: the bytes from there to the end of the file
//     are saved to <segment>.log.broken (or .broken.1, .broken.2, ... when
//     that exists), fsynced, and the segment is truncated to its last whole
//     batch, with a WARN log naming the file, offset and bytes cut. Its
//     index is rebuilt in memory from the same scan. But when that batch
//     lies before P of the recovery point's segment, it is not a torn write:
//     the checkpoint saw those bytes fsynced. That is a *CorruptionError
//     naming the file and byte, and nothing is cut; so is a log that ends
//     before offset N after recovery (a segment missing). Removing
//     CHECKPOINT opens the log as it is.
//
// Then the source table: Open loads the newest snapshot whose offset is at
// or below the recovered end and at or above Start, and replays the batch
// headers after it: those of the last segment come from its scan when it
// was scanned; any other segment after the snapshot (normally none) is
// read whole, both CRCs checked, damage a *CorruptionError. A snapshot that
// does not decode (CRC, magic, version, offset, order, lengths) is logged
// at WARN and removed, and the next older one is tried; with none left,
// the table is rebuilt from the first segment on (logged at WARN when a
// snapshot was expected). Snapshots above the recovered end (their batches
// were cut) or below Start are removed, so that a snapshot never describes
// batches the log does not hold. Finally CHECKPOINT is rewritten.
//
// Damage, and what becomes of it:
//
//	torn tail of the last segment (after P)   cut, kept in .broken, WARN
//	last segment damaged before P             *CorruptionError(file, byte); nothing cut
//	segment header                            torn at creation: .broken, WARN; else *CorruptionError(file, 0)
//	sealed segment                            *CorruptionError(file, byte) from Open, when a check reads
//	                                          it; else from the Read or Scan that reaches it
//	offset index (missing, damaged, wrong)    rebuilt from a scan of its segment (at Open, or when a
//	                                          reader first loads it), rewritten, WARN
//	time index                                rebuilt, WARN (see "Time index file")
//	snapshot                                  removed, WARN; older snapshot or full rebuild of the table
//	checkpoint                                ignored, WARN: every partition recovered as without one
//	*.tmp                                     removed
//
// So a restart after a clean shutdown reads per segment its header, its
// index's header and last entry, its time index and a few batch prefixes,
// and one snapshot per partition;
// after an unclean one, that and the segments from the recovery point on,
// normally just the last: never every segment (KAFKA-5829). The price:
// damage to the body of a batch in a trusted segment is not found by
// Open; the reader that decodes the batch finds it (batch.Parse checks the
// body CRC), and `logship log verify` checks everything.
package logstore

// Wire format: do not change. A new layout gets a new version number; a
// version only moves forward.
const (
	segmentMagic   = "LSSG"
	indexMagic     = "LSIX"
	segmentVersion = 1
	indexVersion   = 1

	// fileHeaderSize is the size of both the segment and the index header.
	fileHeaderSize = 32
	hdrOffMagic    = 0
	hdrOffVersion  = 4
	hdrOffBase     = 8
	hdrOffCRC      = 28

	indexEntrySize = 12
	entryOffRel    = 0
	entryOffPos    = 4
	entryOffCRC    = 8

	timeIndexMagic   = "LSTI"
	timeIndexVersion = 1
	hdrOffCount      = 16 // time index only: number of entries
	timeEntrySize    = 16
	timeEntryOffTime = 0
	timeEntryOffRel  = 8
	timeEntryOffCRC  = 12

	// nameDigits is the width of the zero-padded base offset in file names.
	nameDigits      = 20
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	brokenSuffix    = ".broken"
	tmpSuffix       = ".tmp"
	lockName        = "LOCK"
)

// Wire format: do not change. The checkpoint and snapshot files (see
// "Checkpoint file" and "Snapshot file").
const (
	checkpointName         = "CHECKPOINT"
	checkpointMagic        = "LSCP"
	checkpointVersion      = 1
	cpHdrSize              = 12 // magic, version, reserved, count
	cpHdrOffVersion        = 4
	cpHdrOffCount          = 8
	cpEntryFixedSize       = 2 + 4 + 1 + 8 + 8 + 8 // topic length, id, flags, segment, position, offset
	cpCRCSize              = 4
	cpFlagClean       byte = 1 << 0

	snapshotMagic      = "LSSN"
	snapshotVersion    = 1
	snapshotSuffix     = ".snapshot"
	snapHdrSize        = 28 // magic, version, reserved, offset, newest append, count
	snapHdrOffVersion  = 4
	snapHdrOffOffset   = 8
	snapHdrOffMaxTime  = 16
	snapHdrOffCount    = 24
	snapEntryFixedSize = 2 + 8 + 8 + 8 + 8 // agent length, source, range end, last offset, append time
	snapCRCSize        = 4
)
