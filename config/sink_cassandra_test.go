package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadCassandraSink(t *testing.T) {
	got, err := LoadSinks(filepath.Join(testdata, "sinks-cassandra.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Sink{
		Name: "cassandra-main", Type: "cassandra", Topics: []string{"app", "nginx-access"},
		RollSize: 128 * MiB, RollInterval: Duration(15 * time.Minute), IdleTimeout: Duration(time.Minute),
		FetchBytes: 1 * MiB, Start: "earliest",
		CassandraSink: CassandraSink{
			Hosts: []string{"127.0.0.1:9042"}, Keyspace: "logship", Table: "logs", Consistency: "LOCAL_QUORUM",
			TTL: Duration(720 * time.Hour), CreateSchema: true,
			Replication: map[string]string{"class": "NetworkTopologyStrategy", "dc1": "3"},
			Username:    "logship", PasswordFile: "/etc/logship/cassandra.password",
			TLSCAFile: "/etc/logship/cassandra-ca.pem", LocalDC: "dc1",
			Concurrency: 32, BatchMaxBytes: 64 * KiB, MaxRecordBytes: 8 * MiB, Bucket: Duration(time.Hour),
			RequestTimeout: Duration(10 * time.Second), RetryMin: Duration(100 * time.Millisecond),
			RetryMax: Duration(30 * time.Second), DeadLetterDir: "/tmp/logship/dead-letters",
		},
	}
	if len(got.Sinks) != 2 || !reflect.DeepEqual(got.Sinks[0], want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got.Sinks, want)
	}
	if file := got.Sinks[1]; !reflect.DeepEqual(file.CassandraSink, CassandraSink{}) {
		t.Fatalf("a file sink got Cassandra defaults: %+v", file.CassandraSink)
	}
}

// TestCassandraDefaults: a minimal cassandra sink built in code gets every
// default, and validates.
func TestCassandraDefaults(t *testing.T) {
	s := &Sinks{
		Aggregators: []string{"127.0.0.1:7450"},
		Sinks: []Sink{{Name: "c", Type: "cassandra", Topics: []string{"app"},
			CassandraSink: CassandraSink{Hosts: []string{"db1"}, Keyspace: "logs", DeadLetterDir: "/var/lib/logship/dl"}}},
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	c := s.Sinks[0].CassandraSink
	if c.Consistency != "LOCAL_QUORUM" || c.Bucket != Duration(time.Hour) || c.Table != "logs" || c.TTL != 0 || c.MaxRetries != 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestSinkKeysUnique: the [[sink]] table flattens the keys of every sink
// type's embedded struct; two fields with one key would leave one of them
// never set.
func TestSinkKeysUnique(t *testing.T) {
	seen := map[string]string{}
	var walk func(rt reflect.Type, path string)
	walk = func(rt reflect.Type, path string) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag := f.Tag.Get("toml")
			switch {
			case tag != "":
				if prev, ok := seen[tag]; ok {
					t.Errorf("key %q is both %s and %s", tag, prev, path+f.Name)
				}
				seen[tag] = path + f.Name
			case f.Anonymous:
				walk(f.Type, path+f.Name+".")
			}
		}
	}
	walk(reflect.TypeFor[Sink](), "Sink.")
}

// loadSinksText writes body as a sinks config and loads it.
func loadSinksText(t *testing.T, body string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sinks.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSinks(path)
	return err
}

// wantProblem fails unless err is an *Errors with a problem naming
// key, located at a line.
func wantProblem(t *testing.T, err error, key string) {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("config accepted (err %v); want a problem for %s", err, key)
	}
	for _, p := range errs.Problems {
		if strings.Contains(p.Msg, key) {
			if p.Line == 0 {
				t.Errorf("problem %q has no line", p)
			}
			return
		}
	}
	t.Fatalf("no problem names %s:\n%v", key, err)
}

const minimalCassandraSink = `aggregators = ["127.0.0.1:7450"]

[[sink]]
name = "c"
type = "cassandra"
topics = ["app"]
keyspace = "logship"
dead_letter_dir = "/tmp/dl"
`

// TestCassandraConfigRefuses: values that are wrong although each looks
// fine alone. Keys of one type on a sink of another would be ignored (a
// typo'd type, a copy-pasted table); they are refused with "only for
// type ...", as the hdfs and file types do.
func TestCassandraConfigRefuses(t *testing.T) {
	cases := []struct {
		name, body, key string
	}{
		{
			// The file sink silently ignores every cassandra key.
			"cassandra keys on a file sink", `aggregators = ["127.0.0.1:7450"]

[[sink]]
name = "f"
type = "file"
topics = ["app"]
dir = "/tmp/out"
hosts = ["db1:9042"]
keyspace = "logship"
dead_letter_dir = "/tmp/dl"
`, "sink[0].hosts",
		},
		{
			// dir means nothing to a cassandra sink (the hdfs type rejects it).
			"dir on a cassandra sink", minimalCassandraSink + `hosts = ["db1:9042"]
dir = "/tmp/out"
`, "sink[0].dir",
		},
		{
			"hdfs keys on a cassandra sink", minimalCassandraSink + `hosts = ["db1:9042"]
namenodes = ["nn1:8020"]
`, "sink[0].namenodes",
		},
		{
			// The sink quotes its names in CQL, but every query a
			// person writes would have to as well.
			"reserved word as table", minimalCassandraSink + `hosts = ["db1:9042"]
table = "table"
`, "sink[0].table",
		},
		{
			"reserved word as keyspace", strings.Replace(minimalCassandraSink, `keyspace = "logship"`, `keyspace = "select"`, 1) + `hosts = ["db1:9042"]
`, "sink[0].keyspace",
		},
		{
			"repeated host", minimalCassandraSink + `hosts = ["db1:9042", "db1:9042"]
`, "sink[0].hosts[1]",
		},
		{
			"repeated host, default port", minimalCassandraSink + `hosts = ["db1", "db1:9042"]
`, "sink[0].hosts[1]",
		},
		{
			// Cassandra 3 and 4 refuse expiry times past 2038-01-19
			// (32-bit seconds): every row would be dead-lettered.
			"ttl past 2038", minimalCassandraSink + `hosts = ["db1"]
ttl = "131400h"
`, "sink[0].ttl",
		},
		{
			"batch above a mutation", minimalCassandraSink + `hosts = ["db1"]
batch_max_bytes = "16MiB"
`, "sink[0].batch_max_bytes",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, loadSinksText(t, tc.body), tc.key)
		})
	}
}

// TestCassandraIPv6Host: hosts are "host or host:port (port 9042)", and
// gocql takes an IPv6 literal without a port ("::1"): a ':' alone does not
// make a host:port.
func TestCassandraIPv6Host(t *testing.T) {
	err := loadSinksText(t, minimalCassandraSink+`hosts = ["::1", "fd00::5"]
`)
	if err != nil {
		t.Fatalf("IPv6 hosts without a port refused:\n%v", err)
	}
}
