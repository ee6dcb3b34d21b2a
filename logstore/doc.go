// Package logstore is logship's partitioned, segmented on-disk log: the
// aggregator appends batches (see package batch) to a partition, sinks read
// them back by offset. The batch bytes are stored exactly as the agent built
// them, except for the 21-byte prefix the aggregator stamps (base offset,
// append time, header CRC): the store never decompresses anything.
//
// # Directory layout
//
//	<dir>/LOCK                                  flock held while a Store is open
//	<dir>/<topic>-<id>/                         one directory per partition
//	<dir>/<topic>-<id>/<base>.log               segment: batches with offsets from <base>
//	<dir>/<topic>-<id>/<base>.index             sparse offset index of that segment
//	<dir>/<topic>-<id>/<base>.log.broken[.N]    bytes cut from a torn tail, for people
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
// on the append path.
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
// # Recovery
//
// Open recovers every partition before it returns:
//
//   - Leftover *.tmp files (an interrupted index write) are removed.
//   - Every segment header is checked (magic, version, CRC, base offset
//     equal to the name). The last segment, if it is no longer than a header
//     and its header is bad, was torn while being created (no batch can have
//     been acknowledged in it): it is moved aside as .broken and the one
//     before becomes the last. Any other bad header is a *CorruptionError.
//   - The last segment is scanned batch by batch: batch.CheckPrefix, a full
//     batch.Parse, and contiguous base offsets. At the first batch that fails,
//     the tail is cut: the bytes from there to the end of the file are saved
//     to <segment>.log.broken (or .broken.1, .broken.2, ... when that exists),
//     fsynced, and the segment is truncated to its last whole batch, with a
//     WARN log naming the file, offset and bytes cut. Its index is rebuilt in
//     memory from the same scan.
//   - An older segment is trusted when its index is valid (header, entry
//     CRCs, monotonic entries inside the file) and a walk from the last index
//     entry reaches the exact end of the file with contiguous offsets that
//     end at the next segment's base offset. Otherwise it is scanned like the
//     last one and its index rewritten; damage found by that scan is a
//     *CorruptionError naming the file and byte position, returned from
//     Open: data before the tail is never silently dropped.
//
// So a restart reads the index files, the tail of each older segment and
// the whole last segment, never every segment (KAFKA-5829). The price:
// damage to the body of a batch in an older segment, before its last index
// entry, is not found by Open; the reader that decodes the batch finds it
// (batch.Parse checks the body CRC), and a later scrub or checkpoint can.
//
// Limits of this version: every segment keeps its file open and its index
// entries in memory (8 bytes per IndexIntervalBytes of log; nothing is
// mmapped, so vm.max_map_count is never a concern, KAFKA-6343).
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

	// nameDigits is the width of the zero-padded base offset in file names.
	nameDigits   = 20
	logSuffix    = ".log"
	indexSuffix  = ".index"
	brokenSuffix = ".broken"
	tmpSuffix    = ".tmp"
	lockName     = "LOCK"
)
