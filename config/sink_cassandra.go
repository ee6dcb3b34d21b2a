package config

import (
	"maps"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CassandraSink holds the keys of a [[sink]] of type "cassandra" (the
// sinks/cassandra package documents the table and the behaviour). It is
// embedded in Sink: its keys are the [[sink]] table's own.
type CassandraSink struct {
	Hosts          []string          `toml:"hosts"`            // required: contact points, host or host:port (port 9042); an IPv6 address with a port in [brackets]
	Keyspace       string            `toml:"keyspace"`         // required: lower-case CQL identifier, not a reserved word
	Table          string            `toml:"table"`            // default "logs"; the same rule
	Consistency    string            `toml:"consistency"`      // default "LOCAL_QUORUM"
	TTL            Duration          `toml:"ttl"`              // default none: a TTL set on every row written, whole seconds, ending before 2038-01-19 (Cassandra 3 and 4)
	CreateSchema   bool              `toml:"create_schema"`    // create the keyspace and table when missing
	Replication    map[string]string `toml:"replication"`      // with create_schema: the keyspace's replication, "class" required
	Username       string            `toml:"username"`         // PasswordAuthenticator user
	Password       string            `toml:"password"`         // its password, or:
	PasswordFile   string            `toml:"password_file"`    // a file holding it (trailing newline ignored)
	TLSCAFile      string            `toml:"tls_ca_file"`      // PEM CA certificates of the servers (TLS is on when any tls_ key is set)
	TLSCertFile    string            `toml:"tls_cert_file"`    // PEM client certificate, with tls_key_file
	TLSKeyFile     string            `toml:"tls_key_file"`     // PEM client key
	TLSServerName  string            `toml:"tls_server_name"`  // name the servers' certificates carry, when not their host names
	LocalDC        string            `toml:"local_dc"`         // prefer this data center's coordinators
	Concurrency    int               `toml:"concurrency"`      // default 32: batches in flight for the whole sink
	BatchMaxBytes  Size              `toml:"batch_max_bytes"`  // default 64KiB, at most 15MiB: bound of a batch (one partition key)
	MaxRecordBytes Size              `toml:"max_record_bytes"` // default 8MiB, at most 15MiB: a larger record goes to the dead-letter file
	Bucket         Duration          `toml:"bucket"`           // default 1h: time span of a partition key
	RequestTimeout Duration          `toml:"request_timeout"`  // default 10s: of each request, and of connecting
	RetryMin       Duration          `toml:"retry_min"`        // default 100ms: first wait after a failed write
	RetryMax       Duration          `toml:"retry_max"`        // default 30s: longest wait between retries
	MaxRetries     int               `toml:"max_retries"`      // default 0, forever: else retries before the dead-letter file
	DeadLetterDir  string            `toml:"dead_letter_dir"`  // required, absolute: where records Cassandra refuses are kept
}

// Cassandra sink defaults.
const (
	defaultCassandraTable       = "logs"
	defaultCassandraConsistency = "LOCAL_QUORUM"
	defaultCassandraConcurrency = 32
	defaultCassandraBatchMax    = 64 * KiB
	defaultCassandraMaxRecord   = 8 * MiB
	defaultCassandraBucket      = Duration(time.Hour)
	defaultCassandraTimeout     = Duration(10 * time.Second)
	defaultCassandraRetryMin    = Duration(100 * time.Millisecond)
	defaultCassandraRetryMax    = Duration(30 * time.Second)
	cassandraMaxTTL             = Duration(630720000 * time.Second) // Cassandra's limit: 20 years
	cassandraDefaultPort        = "9042"
	// cassandraMaxBatch bounds batch_max_bytes and max_record_bytes:
	// Cassandra refuses a mutation (a batch of one partition key is one)
	// above max_mutation_size, half of commitlog_segment_size, 16MiB by
	// default; 1MiB is left for what the sink's size estimate omits.
	cassandraMaxBatch = 15 * MiB
	// cassandraMaxExpiry (2038-01-19T03:14:07Z, in unix seconds) is the
	// last expiry time Cassandra 3 and 4 store; by default they refuse a
	// write whose TTL ends later (CASSANDRA-14092), so every row would be
	// dead-lettered. A TTL must end cassandraTTLMargin before it, counted
	// from when the config is loaded (a sink runs that long at least).
	cassandraMaxExpiry = 1<<31 - 1
	cassandraTTLMargin = 30 * 24 * time.Hour
)

// CassandraConsistencies are the valid values of consistency (for writes).
func CassandraConsistencies() []string {
	return []string{"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
}

var (
	cqlIdentifier   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)
	replicationWord = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// cqlReserved reports whether name is a reserved CQL keyword of Cassandra
// 3.x to 5.0 (key and count were reserved in 3.x). The sink quotes its
// names in every statement, so such a name would work, but every query a
// person writes against the table would have to quote it too.
func cqlReserved(name string) bool {
	switch name {
	case "add", "allow", "alter", "and", "apply", "asc", "authorize", "batch", "begin", "by",
		"columnfamily", "count", "create", "default", "delete", "desc", "describe", "drop",
		"entries", "execute", "for", "from", "full", "grant", "if", "in", "index", "infinity",
		"insert", "into", "is", "key", "keyspace", "limit", "materialized", "mbean", "mbeans",
		"modify", "nan", "norecursive", "not", "null", "of", "on", "or", "order", "primary",
		"rename", "replace", "restrict", "revoke", "schema", "select", "set", "table", "to",
		"token", "truncate", "unlogged", "unrestrict", "unset", "update", "use", "using", "view",
		"where", "with":
		return true
	}
	return false
}

// checkCQLName checks a keyspace or table name.
func checkCQLName(c *checker, key, what, name string) {
	switch {
	case !cqlIdentifier.MatchString(name):
		c.errorf(key, "invalid %s %q: want a lower-case CQL identifier, [a-z_][a-z0-9_]{0,47}", what, name)
	case cqlReserved(name):
		c.errorf(key, "invalid %s %q: a reserved CQL keyword, which every query would have to quote", what, name)
	}
}

// cassandraHostID returns a contact point as host:port, the port
// defaulted, an IP address in its canonical form, so that repeats are
// found; ok is false when h is not a valid contact point (reported).
func cassandraHostID(c *checker, key, h string) (id string, ok bool) {
	if ip := net.ParseIP(h); ip != nil { // IPv6 too: "::1" has no port
		return net.JoinHostPort(ip.String(), cassandraDefaultPort), true
	}
	if strings.ContainsAny(h, " \t/") {
		c.errorf(key, "invalid host %q: want host or host:port", h)
		return "", false
	}
	if !strings.Contains(h, ":") {
		return net.JoinHostPort(strings.ToLower(h), cassandraDefaultPort), true
	}
	n := len(c.probs)
	c.address(key, h, true)
	if len(c.probs) > n {
		return "", false
	}
	host, port, _ := net.SplitHostPort(h)
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	p, _ := strconv.Atoi(port) // checked by address
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(p)), true
}

// setKeys returns the toml keys of the fields of struct v that are set
// (not zero), in field order. Other types leave these keys zero (no
// defaults), so a set one was written in the file.
func setKeys(v any) []string {
	rv := reflect.ValueOf(v)
	var keys []string
	for i := range rv.NumField() {
		tag, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("toml"), ",")
		if tag != "" && !rv.Field(i).IsZero() {
			keys = append(keys, tag)
		}
	}
	return keys
}

// checkNoCassandraKeys refuses the keys of type "cassandra" on a sink of
// another type, which would ignore them.
func (s *Sink) checkNoCassandraKeys(c *checker, at string) {
	for _, name := range setKeys(s.CassandraSink) {
		c.errorf(at+"."+name, `only for type "cassandra"`)
	}
}

// checkNoOtherKeys refuses, on a sink of type "cassandra", the keys of
// types "file" and "hdfs", which it would ignore.
func (s *Sink) checkNoOtherKeys(c *checker, at string) {
	if s.Dir != "" {
		c.errorf(at+".dir", `only for type "file": a cassandra sink writes to its table`)
	}
	for _, name := range setKeys(s.HDFSSink) {
		switch name {
		case "namenodes", "user", "block_size", "block_replication": // type "file" refuses them too
			c.errorf(at+"."+name, `only for type "hdfs"`)
		default:
			c.errorf(at+"."+name, `only for types "file" and "hdfs"`)
		}
	}
}

// setCassandraDefaults fills in the defaults of a sink of type
// "cassandra" (other types keep these keys zero).
func (s *Sink) setCassandraDefaults(u unsetFunc) {
	if s.Type != "cassandra" {
		return
	}
	k := &s.CassandraSink // explicit: other types' embedded structs may share field names
	setDefault(u, "table", &k.Table, defaultCassandraTable)
	setDefault(u, "consistency", &k.Consistency, defaultCassandraConsistency)
	setDefault(u, "concurrency", &k.Concurrency, defaultCassandraConcurrency)
	setDefault(u, "batch_max_bytes", &k.BatchMaxBytes, defaultCassandraBatchMax)
	setDefault(u, "max_record_bytes", &k.MaxRecordBytes, defaultCassandraMaxRecord)
	setDefault(u, "bucket", &k.Bucket, defaultCassandraBucket)
	setDefault(u, "request_timeout", &k.RequestTimeout, defaultCassandraTimeout)
	setDefault(u, "retry_min", &k.RetryMin, defaultCassandraRetryMin)
	setDefault(u, "retry_max", &k.RetryMax, defaultCassandraRetryMax)
}

// checkCassandra checks the keys of a sink of type "cassandra".
func (s *Sink) checkCassandra(c *checker, at string) {
	k := &s.CassandraSink
	key := func(name string) string { return at + "." + name }
	if c.nonEmpty(key("hosts"), len(k.Hosts), "host") {
		seen := map[string]int{}
		for i, h := range k.Hosts {
			hk := indexKey(key("hosts"), i)
			if !c.required(hk, h) {
				continue
			}
			id, ok := cassandraHostID(c, hk, h)
			if !ok {
				continue
			}
			if j, dup := seen[id]; dup {
				c.errorf(hk, "%q repeats %s", h, indexKey(key("hosts"), j))
				continue
			}
			seen[id] = i
		}
	}
	if c.required(key("keyspace"), k.Keyspace) {
		checkCQLName(c, key("keyspace"), "keyspace", k.Keyspace)
	}
	checkCQLName(c, key("table"), "table", k.Table)
	c.oneOf(key("consistency"), k.Consistency, CassandraConsistencies()...)
	last := time.Unix(cassandraMaxExpiry, 0).UTC().Add(-cassandraTTLMargin)
	switch {
	case k.TTL < 0 || k.TTL > cassandraMaxTTL || k.TTL.D()%time.Second != 0:
		c.errorf(key("ttl"), "%v: want whole seconds from 1s to %v (or leave it out for none)", k.TTL, cassandraMaxTTL)
	case k.TTL > 0 && time.Now().Add(k.TTL.D()).After(last):
		c.errorf(key("ttl"), "%v: rows written now would expire after %s, and Cassandra 3 and 4 refuse expiry times past 2038-01-19 (want at most %v)",
			k.TTL, last.Format(time.DateOnly), Duration(max(time.Until(last).Truncate(time.Hour), 0)))
	}
	switch {
	case k.CreateSchema && k.Replication["class"] == "":
		c.errorf(key("replication"), `create_schema needs the keyspace's replication, with its class: replication = {class = "NetworkTopologyStrategy", dc1 = "3"}`)
	case !k.CreateSchema && len(k.Replication) > 0:
		c.errorf(key("replication"), "only used with create_schema = true")
	}
	for _, name := range slices.Sorted(maps.Keys(k.Replication)) {
		if v := k.Replication[name]; !replicationWord.MatchString(name) || !replicationWord.MatchString(v) {
			c.errorf(key("replication"), "invalid setting %q = %q: want [A-Za-z0-9_.-]", name, v)
		}
	}
	if k.Password != "" && k.PasswordFile != "" {
		c.errorf(key("password_file"), "set password or password_file, not both")
	}
	if (k.Password != "" || k.PasswordFile != "") && k.Username == "" {
		c.add(key("username"), `missing required key "`+key("username")+`": a password needs a username`)
	}
	switch {
	case k.TLSCertFile != "" && k.TLSKeyFile == "":
		c.errorf(key("tls_cert_file"), "needs tls_key_file too")
	case k.TLSCertFile == "" && k.TLSKeyFile != "":
		c.errorf(key("tls_key_file"), "needs tls_cert_file too")
	}
	if k.Concurrency < 1 || k.Concurrency > 1024 {
		c.errorf(key("concurrency"), "%d is out of range: want 1 to 1024", k.Concurrency)
	}
	for _, v := range []struct {
		name string
		size Size
	}{{"batch_max_bytes", k.BatchMaxBytes}, {"max_record_bytes", k.MaxRecordBytes}} {
		if v.size < KiB || v.size > cassandraMaxBatch {
			c.errorf(key(v.name), "%v is out of range: want %v to %v (Cassandra refuses a mutation above 16MiB by default)", v.size, KiB, cassandraMaxBatch)
		}
	}
	if k.Bucket < Duration(time.Second) || k.Bucket.D()%time.Millisecond != 0 {
		c.errorf(key("bucket"), "%v: want at least 1s, in whole milliseconds", k.Bucket)
	}
	positive(c, key("request_timeout"), k.RequestTimeout)
	positive(c, key("retry_min"), k.RetryMin)
	if k.RetryMax < k.RetryMin {
		c.errorf(key("retry_max"), "%v is shorter than retry_min (%v)", k.RetryMax, k.RetryMin)
	}
	if k.MaxRetries < 0 {
		c.errorf(key("max_retries"), "must not be negative (0 retries forever)")
	}
	c.absDir(key("dead_letter_dir"), k.DeadLetterDir)
	s.checkNoOtherKeys(c, at)
}

// PasswordSecret returns the password, read from password_file when that
// is set (a trailing newline ignored), as the sink does when it starts. A
// password_file that cannot be read is a *KeyError.
func (k *CassandraSink) PasswordSecret() (string, error) {
	if k.PasswordFile == "" {
		return k.Password, nil
	}
	b, err := os.ReadFile(k.PasswordFile)
	if err != nil {
		return "", &KeyError{Key: "password_file", Err: err}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
