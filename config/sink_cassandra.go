package config

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CassandraSink holds the keys of a [[sink]] of type "cassandra" (the
// sinks/cassandra package documents the table and the behaviour). It is
// embedded in Sink: its keys are the [[sink]] table's own.
type CassandraSink struct {
	Hosts          []string          `toml:"hosts"`            // required: contact points, host or host:port (port 9042)
	Keyspace       string            `toml:"keyspace"`         // required: lower-case CQL identifier
	Table          string            `toml:"table"`            // default "logs"
	Consistency    string            `toml:"consistency"`      // default "LOCAL_QUORUM"
	TTL            Duration          `toml:"ttl"`              // default none: a TTL set on every row written, whole seconds
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
	BatchMaxBytes  Size              `toml:"batch_max_bytes"`  // default 64KiB: bound of a batch (one partition key)
	MaxRecordBytes Size              `toml:"max_record_bytes"` // default 8MiB: a larger record goes to the dead-letter file
	Bucket         Duration          `toml:"bucket"`           // default 1h: time span of a partition key
	RequestTimeout Duration          `toml:"request_timeout"`  // default 10s: of each request, and of connecting
	RetryMin       Duration          `toml:"retry_min"`        // default 100ms: first wait after a failed write
	RetryMax       Duration          `toml:"retry_max"`        // default 30s: longest wait between retries
	MaxRetries     int               `toml:"max_retries"`      // default 0, forever: else retries before the dead-letter file
	DeadLetterDir  string            `toml:"dead_letter_dir"`  // required: where records Cassandra refuses are kept
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
)

// CassandraConsistencies are the valid values of consistency (for writes).
func CassandraConsistencies() []string {
	return []string{"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"}
}

var (
	cqlIdentifier   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)
	replicationWord = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

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
		for i, h := range k.Hosts {
			hk := indexKey(key("hosts"), i)
			switch {
			case !c.required(hk, h):
			case strings.Contains(h, ":"):
				c.address(hk, h, true)
			case strings.ContainsAny(h, " \t/"):
				c.errorf(hk, "invalid host %q: want host or host:port", h)
			}
		}
	}
	if c.required(key("keyspace"), k.Keyspace) && !cqlIdentifier.MatchString(k.Keyspace) {
		c.errorf(key("keyspace"), "invalid keyspace %q: want a lower-case CQL identifier, [a-z_][a-z0-9_]{0,47}", k.Keyspace)
	}
	if !cqlIdentifier.MatchString(k.Table) {
		c.errorf(key("table"), "invalid table %q: want a lower-case CQL identifier, [a-z_][a-z0-9_]{0,47}", k.Table)
	}
	c.oneOf(key("consistency"), k.Consistency, CassandraConsistencies()...)
	if k.TTL < 0 || k.TTL > cassandraMaxTTL || k.TTL.D()%time.Second != 0 {
		c.errorf(key("ttl"), "%v: want whole seconds from 1s to %v (or leave it out for none)", k.TTL, cassandraMaxTTL)
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
	c.sizeRange(key("batch_max_bytes"), k.BatchMaxBytes, KiB, 16*MiB)
	c.sizeRange(key("max_record_bytes"), k.MaxRecordBytes, KiB, 64*MiB)
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
	c.required(key("dead_letter_dir"), k.DeadLetterDir)
}
