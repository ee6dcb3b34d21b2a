// Package batch defines logship's batch: the unit of transport, storage and
// fetch. One format travels from agent to disk to sink (decision 1 of
// DESIGN.md): the agent builds and compresses a batch, the aggregator checks
// it, stamps its base offset and append time and appends it as it is, and a
// sink fetches the stored bytes and decompresses them.
//
// # Layout, version 1
//
// All integers are big-endian. A batch is self-delimiting:
//
//	offset  size  field         written by   covered by
//	     0     4  length        agent        header CRC   bytes after this field (batch size = 4 + length)
//	     4     1  magic         agent        header CRC   format version, 1
//	     5     8  base offset   aggregator   header CRC   offset of the first record in its partition
//	    13     8  append time   aggregator   header CRC   unix milliseconds when the aggregator appended it
//	    21     4  header CRC    aggregator   -            CRC32C (Castagnoli) of bytes [0, 21)
//	    25     4  body CRC      agent        -            CRC32C of bytes [29, 4+length)
//	    -- body: written once by the agent, never changed afterwards --
//	    29     1  compression                body CRC     0 none, 1 zstd, 2 s2 (block format)
//	    30     1  flags                      body CRC     0; other values are refused in version 1
//	    31     4  record count               body CRC     at least 1
//	    35     8  first time                 body CRC     unix nanoseconds of the first record
//	    43     8  last time                  body CRC     unix nanoseconds of the last record
//	    51     8  source id                  body CRC     the agent's id for the file (see agent/doc.go)
//	    59     8  range start                body CRC     byte offset in the source of the first record
//	    67     8  range end                  body CRC     byte offset just past the last record
//	    75   2+n  agent id                   body CRC     uint16 length, then bytes
//	     .   2+n  topic                      body CRC     uint16 length, then bytes
//	     .   2+n  source path                body CRC     uint16 length, then bytes (for humans)
//	     .     4  raw length                 body CRC     size of the payload once decompressed
//	     .     .  payload                    body CRC     the records, compressed as one unit
//
// The agent sends a batch with base offset and append time zero and a valid
// header CRC; the aggregator rewrites those two fields and the header CRC
// (21 bytes, never the body) before it appends. A flipped bit anywhere in a
// stored batch is caught by one of the two CRCs.
//
// The decompressed payload is a sequence of records:
//
//	uvarint  time delta   nanoseconds after the batch's first time
//	uvarint  n            length of the record
//	n bytes  data         the record, without its trailing newline
//
// The record with index i has offset base offset + i.
package batch
