package config

import (
	"fmt"
	"time"
)

// Sinks is the config of a sink worker: the aggregators to pull from and
// the sinks to deliver to, each with its own offsets. Load it with
// LoadSinks, or build it in code and call SetDefaults and Validate.
type Sinks struct {
	Aggregators   []string `toml:"aggregators"`    // required: host:port of every aggregator
	Sinks         []Sink   `toml:"sink"`           // at least one [[sink]]
	MetricsListen string   `toml:"metrics_listen"` // optional host:port for /metrics
	TLS           TLS      `toml:"tls"`            // [tls] to the aggregators (config/tls.go)
	ClientAuth             // token or token_file (config/tls.go)
}

// Sink is one [[sink]] table: a named consumer of some topics. The keys
// after Topics depend on Type; see SinkTypes.
type Sink struct {
	Name         string   `toml:"name"`          // required; a batch.ValidName, unique among the sinks
	Type         string   `toml:"type"`          // required: one of SinkTypes
	Topics       []string `toml:"topics"`        // required: the topics to deliver
	Dir          string   `toml:"dir"`           // type "file": required, absolute output directory
	RollSize     Size     `toml:"roll_size"`     // default 128MiB: a file is published when it reaches this size
	RollInterval Duration `toml:"roll_interval"` // default 15m: a file is published at most this long after its first record
	IdleTimeout  Duration `toml:"idle_timeout"`  // default 1m (5m for hdfs): a file is published when no record arrived for this long; at most roll_interval
	FetchBytes   Size     `toml:"fetch_bytes"`   // default 1MiB: bytes asked for per fetch
	Start        string   `toml:"start"`         // "earliest" (default) or "latest": where a sink with no committed offset starts

	CassandraSink // type "cassandra": its keys, in sink_cassandra.go
	HDFSSink      // type "hdfs" (and the file engine's keys of type "file"), in sink_hdfs.go
}

// SinkTypes returns the valid values of Sink.Type.
//
// Adding a type means: its name here, its keys in Sink (with defaults in
// Sink.setDefaults when it has any), and a case in Sink.checkType that
// checks them.
func SinkTypes() []string { return []string{"file", "cassandra", "hdfs"} }

// Sink defaults.
const (
	defaultRollSize     = 128 * MiB
	defaultRollInterval = Duration(15 * time.Minute)
	defaultIdleTimeout  = Duration(time.Minute)
	defaultFetchBytes   = 1 * MiB
)

// LoadSinks reads the sink worker config at path, applies defaults to the
// keys it leaves out, and validates it. A file that cannot be read is a
// plain error; every other problem is in an *Errors. A file of another
// kind is that one problem.
func LoadSinks(path string) (*Sinks, error) {
	f, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return loadKind[Sinks](f, KindSinks)
}

// SetDefaults sets every zero field of s, and of its sinks, to its default.
func (s *Sinks) SetDefaults() { s.setDefaults(isZero) }

func (s *Sinks) setDefaults(u unsetFunc) {
	for i := range s.Sinks {
		s.Sinks[i].setDefaults(within(u, indexKey("sink", i)))
	}
}

func (k *Sink) setDefaults(u unsetFunc) {
	setDefault(u, "roll_size", &k.RollSize, defaultRollSize)
	setDefault(u, "roll_interval", &k.RollInterval, defaultRollInterval)
	setDefault(u, "idle_timeout", &k.IdleTimeout, k.defaultIdleTimeout())
	setDefault(u, "fetch_bytes", &k.FetchBytes, defaultFetchBytes)
	setDefault(u, "start", &k.Start, "earliest")
	k.setCassandraDefaults(u)
	k.setHDFSDefaults(u)
}

// Validate reports every problem with s as an *Errors, or returns nil. It
// checks s as it is: call SetDefaults first to fill in unset fields.
func (s *Sinks) Validate() error { return validate(s) }

func (s *Sinks) check(c *checker) {
	c.addresses("aggregators", s.Aggregators)
	if s.MetricsListen != "" {
		c.address("metrics_listen", s.MetricsListen, false)
	}
	s.TLS.check(c, false)
	s.ClientAuth.check(c)
	if !c.tables("sink", len(s.Sinks)) {
		return
	}
	names := map[string]int{}
	for i := range s.Sinks {
		at := indexKey("sink", i)
		k := &s.Sinks[i]
		k.check(c, at)
		if j, ok := names[k.Name]; ok && k.Name != "" {
			c.errorf(at+".name", "sink name %q is already used by %s", k.Name, indexKey("sink", j))
		} else {
			names[k.Name] = i
		}
	}
}

func (s *Sinks) checkFiles(c *checker, now time.Time) {
	_, err := s.TLS.ClientConfig(now, nil)
	c.loaded("tls", err)
	_, err = s.ClientAuth.Secret()
	c.loaded("", err)
	for i := range s.Sinks {
		if s.Sinks[i].Type == "cassandra" {
			_, err := s.Sinks[i].PasswordSecret()
			c.loaded(indexKey("sink", i), err)
		}
	}
}

func (k *Sink) check(c *checker, at string) {
	c.name(at+".name", "sink name", k.Name)
	if c.required(at+".type", k.Type) {
		k.checkType(c, at)
	}
	if c.nonEmpty(at+".topics", len(k.Topics), "topic") {
		seen := map[string]int{}
		for i, t := range k.Topics {
			key := indexKey(at+".topics", i)
			if j, ok := seen[t]; ok {
				c.errorf(key, "%q repeats %s", t, indexKey(at+".topics", j))
				continue
			}
			seen[t] = i
			c.name(key, "topic", t)
		}
	}
	positive(c, at+".roll_size", k.RollSize)
	positive(c, at+".roll_interval", k.RollInterval)
	positive(c, at+".idle_timeout", k.IdleTimeout)
	if k.IdleTimeout > k.RollInterval && k.RollInterval > 0 {
		// Point at whichever of the two the user wrote.
		key, dflt := at+".idle_timeout", ""
		if c.given != nil && !c.given[key] {
			key, dflt = at+".roll_interval", " (the default)"
		}
		c.add(key, fmt.Sprintf("%s.idle_timeout: %v%s is longer than roll_interval (%v)", at, k.IdleTimeout, dflt, k.RollInterval))
	}
	positive(c, at+".fetch_bytes", k.FetchBytes)
	c.oneOf(at+".start", k.Start, "earliest", "latest")
}

// checkType checks the keys that depend on the sink's type.
func (k *Sink) checkType(c *checker, at string) {
	switch k.Type {
	case "file":
		c.absDir(at+".dir", k.Dir)
		k.checkFileEngine(c, at)
		k.checkNoCassandraKeys(c, at)
	case "cassandra":
		k.checkCassandra(c, at)
	case "hdfs":
		k.checkHDFS(c, at)
		k.checkNoCassandraKeys(c, at)
	default:
		c.oneOf(at+".type", k.Type, SinkTypes()...)
	}
}
