package config

import (
	"path/filepath"
	"reflect"
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
		FetchBytes: 4 * MiB, Start: "earliest",
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
