// Package hdfs is logship's HDFS sink: few large files, exactly once, with
// no write-ahead log (decision 6 of DESIGN.md, PITFALLS.md "HDFS").
//
// It is the engine of package file (rolling, naming, formats, markers and
// recovery: read its doc) over FS, a file.FS on the native HDFS client
// github.com/colinmarc/hdfs/v2 (no JVM). What this package adds is what is
// HDFS's own:
//
//   - Layout. Options.Path is absolute, e.g. /logs/{topic}/{yyyy}/{mm}/{dd}/{hh};
//     its fixed leading directories (/logs) are the sink's directory, which
//     holds _tmp/ (files being written) and _state/ (one marker per
//     partition). Renames stay inside one namespace, so they are atomic.
//   - Durability. A file's Sync is hflush (its bytes reach every datanode
//     of the pipeline); its Close completes it with the NameNode, which
//     ends its lease. A file is renamed only after its Close succeeded, so
//     no published file is ever under construction, half or empty. Every
//     namespace change is durable once the NameNode answered: SyncDir has
//     nothing to do.
//   - Leases. A crashed writer's temporary file stays under its lease (up to
//     the NameNode's hard limit, an hour): the next Open deletes it (a
//     delete needs no lease), or, if that fails, ignores it, since new
//     temporary names are random. Nothing ever waits for a lease: there is
//     no file the sink must append to or recover (the pitfall of
//     kafka-connect-hdfs's WAL, #53, #141).
//   - Failures. The client connects on first use and is kept: a NameNode
//     connection whose call failed is closed at once, and the client dials
//     again on its next call (ErrUnavailable until then), failing over
//     between an HA pair, so the lease renewal of the files open on it
//     never stops. Every NameNode call and datanode write is bounded by
//     Options.Timeout while it makes no progress, and by the context of
//     the sink's call too (FS is a file.ContextFS): Open returns when the
//     runtime cancels it at shutdown, and Close within the runtime's close
//     timeout, the file's completion included, whatever the NameNode does.
//     A call given up on ends by its own Timeout, or when the sink closes.
//     A close the NameNode answers with "still replicating" is asked again
//     a few times. A publish's NameNode steps after the close (mkdir,
//     marker, rename) are retried in place with a backoff, about a minute
//     by default (Options.Retries): an HA failover. Any other failure (a
//     datanode lost mid-write, permission denied, a quota, ErrQuota) makes
//     the partition's writer fail: its temporary file is deleted, never
//     patched, and the runtime logs the error, backs off, opens a new
//     writer, which fetches the records again. No record is skipped: a
//     commit only ever follows a published file. Failures show in the
//     sink's Stats (errors by step, retries, abandoned files), exported by
//     cmd/logship.
//
// The engine's tests (package file) run the same code over a local
// directory and an in-memory crashable FS; this package's integration
// tests (build tag integration, LOGSHIP_TEST_HDFS=host:port) run it
// against a real HDFS.
package hdfs
