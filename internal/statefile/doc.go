// Package statefile reads and writes logship's small durable state files:
// the agent's positions, the aggregator's committed sink offsets and the
// sinks' markers. A state file is replaced atomically and never overwritten
// in place: write a temporary file beside it, fsync it, rename it over the
// old one, fsync the directory. A crash at any step leaves either the old
// file or the new one, never a mix.
//
// # Layout, version 1
//
// A state file is text, so that people can read it, with a one-line header:
//
//	logship <kind> v<version> crc32c=<8 lower-case hex digits> len=<decimal>\n
//	<body: len bytes, JSON by convention>
//
// kind names what the file holds ("positions", "offsets", ...) and version
// is the body's schema version, owned by the caller. The CRC32C (Castagnoli)
// covers exactly the body. A file whose header does not parse, whose kind
// differs, whose body is shorter or longer than len, or whose CRC does not
// match is corrupt: Read returns a *CorruptError and the caller decides what
// is safe (the agent, for example, keeps it aside as .broken).
package statefile
