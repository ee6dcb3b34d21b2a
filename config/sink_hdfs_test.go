package config

import (
	"path/filepath"
	"testing"
	"time"
)

// TestHDFSDefaults: idle_timeout defaults by type (5m for hdfs, 1m for
// file), whether the file leaves it out or the struct is built in code.
func TestHDFSDefaults(t *testing.T) {
	c, err := LoadSinks(filepath.Join(testdata, "sinks-hdfs.toml"))
	if err != nil {
		t.Fatal(err)
	}
	h, f := c.Sinks[0], c.Sinks[1]
	if h.IdleTimeout.D() != 5*time.Minute || h.WriteBuffer != 8*MiB || h.Compression != "zstd" || h.BlockReplication != 3 {
		t.Fatalf("hdfs: %+v", h)
	}
	if f.IdleTimeout.D() != time.Minute || f.Path != "{topic}/{yyyy}-{mm}-{dd}" || f.Format != "json" {
		t.Fatalf("file: %+v", f)
	}
	s := Sinks{Aggregators: []string{"a:1"}, Sinks: []Sink{{Name: "h", Type: "hdfs", Topics: []string{"app"},
		HDFSSink: HDFSSink{Namenodes: []string{"nn:8020"}, User: "u", Path: "/logs/{topic}"}}}}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if k := s.Sinks[0]; k.IdleTimeout.D() != 5*time.Minute || k.Compression != "none" || k.Format != "lines" {
		t.Fatalf("built in code: %+v", k)
	}
}

func TestRefuseFileEngineKeys(t *testing.T) {
	k := Sink{Type: "cassandra", HDFSSink: HDFSSink{Namenodes: []string{"nn:8020"}, Format: "json"}}
	c := newChecker("config")
	k.refuseFileEngineKeys(c, "sink[0]")
	err := c.err()
	if err == nil || len(err.(*Errors).Problems) != 2 {
		t.Fatalf("got %v, want two problems (namenodes, format)", err)
	}
	c = newChecker("config")
	(&Sink{Type: "cassandra"}).refuseFileEngineKeys(c, "sink[0]")
	if err := c.err(); err != nil {
		t.Fatal(err)
	}
}

// TestHDFSPathRefusedAsTheSinkWould: Validate refuses the hdfs paths that
// the sink would refuse when it starts (hdfs.SplitPath checks every
// element after the fixed directories) or that the NameNode refuses in
// every mkdir (DFSUtil.isValidName: no ':' in a path element), so that
// no file is written, thrown away and written again forever.
func TestHDFSPathRefusedAsTheSinkWould(t *testing.T) {
	validate := func(path string) error {
		s := Sinks{Aggregators: []string{"a:1"}, Sinks: []Sink{{Name: "h", Type: "hdfs", Topics: []string{"app"},
			HDFSSink: HDFSSink{Namenodes: []string{"nn:8020"}, User: "u", Path: path}}}}
		s.SetDefaults()
		return s.Validate()
	}
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"brace in a fixed directory", "/logs/a}b/{topic}", false},
		{"open brace in a fixed directory", "/logs/a{b/x", false},
		{"colon in a template element", "/logs/{topic}/{yyyy}-{mm}-{dd}T{hh}:00", false},
		{"colon in a fixed directory", "/lo:gs/{topic}", false},
		{"unmatched brace after a field", "/logs/{topic}/x}", false},
		{"fixed directories only", "/logs/app", true},
		{"fixed directories then fields", "/logs/all/{topic}/{yyyy}/{mm}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.path)
			if (err == nil) != tc.ok {
				t.Errorf("path %q: %v", tc.path, err)
			}
		})
	}
}
