// Package config is the TOML schema of logship: plain structs with
// defaults and validation, loaded from files whose every problem is
// reported with its file and line in the user's own key names.
//
// # Kinds of file
//
// There are three, one per role; Check tells them apart by their top-level
// keys, and a loader given a file of another kind says so in one problem
// ("looks like an aggregator config (it has listen, data_dir), not an
// agent config"):
//
//   - agent (LoadAgent, Agent): state_dir, the aggregators to send to, batch
//     and window sizes, and one [[input]] table per set of files, naming the
//     topic and the globs to tail.
//   - aggregator (LoadAggregator, Aggregator): listen and data_dir, the
//     number of partitions per topic, the fsync policy, segment and
//     frame sizes, segment age, retention and open segment files.
//   - sinks (LoadSinks, Sinks): the aggregators to pull from and one
//     [[sink]] table per named consumer, with its type, topics, roll policy
//     and where a sink with no committed offset starts.
//
// testdata/config at the root of the repository has a commented example of
// each (agent.toml, aggregator.toml, sinks.toml), and bad examples next to
// the exact errors they produce.
//
// Sizes (Size) are an integer number of bytes or a string with a unit:
// "64MiB", "1GiB", "512KiB" (powers of 1024), "10MB", "4kB" (powers of
// 1000), "100B". Durations (Duration) are strings as time.ParseDuration
// takes them: "250ms", "5s", "15m", "1h", or start with a number of days
// of exactly 24h: "7d", "1.5d", "1d12h".
//
// # Defaults
//
// A key left out of a file takes its default; a key that is present is
// checked as written, so "batch_bytes = 0" is an error, not the default.
// For structs built in code, SetDefaults fills every zero field instead,
// and Validate checks the struct as it is.
//
// # Errors
//
// Loading reports every problem at once, as an *Errors holding one Problem
// per line of output, sorted by line:
//
//	agent.toml: missing required key "state_dir"
//	agent.toml:3: unknown key "agregators"
//	agent.toml:7: input[1].topic: invalid topic "a/b": want 1 to 128 characters of [A-Za-z0-9._-]
//
// A message starts with the key it is about, as a path: tables of an array
// are indexed from 0 in the order they appear ("input[1]" is the second
// [[input]]), and so are elements of an array ("aggregators[0]"). A problem
// whose key is absent is placed at the header of the enclosing table, or
// has no line when the key belongs at the top level. TOML syntax errors
// are reported the same way (only the first, as the parser stops there). A
// value that cannot be decoded is reported once; checks that would only
// repeat it are skipped. Validate on a struct built in code reports the
// same messages with "config" in place of the file name and no lines.
//
// A file that cannot be read at all is a plain error wrapping the cause,
// not an *Errors.
//
// # Files a config names
//
// Token files, TLS certificates, keys and CAs, and a Cassandra sink's
// password_file are read when the role starts, by methods of this package
// (ClientAuth.Secret, Token.Secret, TLS.ServerConfig and ClientConfig,
// CassandraSink.PasswordSecret), which report one that does not load as a
// *KeyError naming the key. Load* and Check do not read them; CheckFiles
// does, with those methods, and reports them like the other problems:
//
//	aggregator.toml:22: token[0].token_file: open /etc/logship/tokens/fleet: no such file or directory
package config
