package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden *.bad.toml.err files in testdata/config")

const testdata = "../testdata/config"

// kindOf is the kind a test file's name promises: the part before the first
// '-' or '.', when that is a kind.
func kindOf(name string) string {
	k, _, _ := strings.Cut(strings.SplitN(name, ".", 2)[0], "-")
	switch k {
	case KindAgent, KindAggregator, KindSinks:
		return k
	}
	return ""
}

// loadAs loads path with the loader of kind.
func loadAs(kind, path string) (any, error) {
	switch kind {
	case KindAgent:
		return LoadAgent(path)
	case KindAggregator:
		return LoadAggregator(path)
	case KindSinks:
		return LoadSinks(path)
	}
	panic("BUG: no loader for kind " + kind)
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(tb testing.TB, path, got string) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		tb.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func glob(tb testing.TB, pattern string) []string {
	tb.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		tb.Fatalf("no files match %s (%v)", pattern, err)
	}
	return files
}

// TestBadFiles checks every testdata/config/*.bad.toml against its golden
// *.bad.toml.err, through Check and through the loader of its kind.
func TestBadFiles(t *testing.T) {
	t.Chdir(testdata) // so messages name files as "agent-x.bad.toml"
	for _, name := range glob(t, "*.bad.toml") {
		t.Run(strings.TrimSuffix(name, ".bad.toml"), func(t *testing.T) {
			kind, err := Check(name)
			if want := kindOf(name); kind != want {
				t.Errorf("Check: kind %q, want %q", kind, want)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Check: got %T %v, want *Errors", err, err)
			}
			golden(t, name+".err", err.Error()+"\n")
			if kind == "" {
				return
			}
			v, lerr := loadAs(kind, name)
			if lerr == nil || lerr.Error() != err.Error() {
				t.Errorf("Load %s: got %v, %v; want the same errors as Check", kind, v, lerr)
			}
		})
	}
	// Every golden file has its config.
	for _, name := range glob(t, "*.bad.toml.err") {
		if _, err := os.Stat(strings.TrimSuffix(name, ".err")); err != nil {
			t.Errorf("stale golden file: %v", err)
		}
	}
}

// TestGoodFiles checks that every other testdata/config/*.toml loads.
func TestGoodFiles(t *testing.T) {
	for _, path := range glob(t, filepath.Join(testdata, "*.toml")) {
		name := filepath.Base(path)
		if strings.HasSuffix(name, ".bad.toml") {
			continue
		}
		t.Run(strings.TrimSuffix(name, ".toml"), func(t *testing.T) {
			kind, err := Check(path)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if want := kindOf(name); kind != want || want == "" {
				t.Errorf("Check: kind %q, want %q", kind, want)
			}
			v, err := loadAs(kind, path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			// A loaded config passes Validate and has no zero field left
			// for SetDefaults to fill.
			type validated interface {
				Validate() error
				SetDefaults()
			}
			c := v.(validated)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
			before := reflect.ValueOf(c).Elem().Interface()
			c.SetDefaults()
			if after := reflect.ValueOf(c).Elem().Interface(); !reflect.DeepEqual(before, after) {
				t.Errorf("SetDefaults changed a loaded config:\n%+v\n%+v", before, after)
			}
		})
	}
}

func TestLoadValues(t *testing.T) {
	host := hostID("")
	tests := []struct {
		file string
		want any
	}{
		{"agent.toml", &Agent{
			ID: "demo-agent", StateDir: "/tmp/logship/agent", Aggregators: []string{"127.0.0.1:7450"},
			Compression: "zstd", Compressors: 2, BatchBytes: 256 * KiB, BatchWait: Duration(200 * time.Millisecond),
			WindowBytes: 16 * MiB, ScanInterval: Duration(time.Second), PollInterval: Duration(250 * time.Millisecond),
			PositionsInterval: Duration(time.Second), MetricsListen: "127.0.0.1:9400",
			MaxOpenFiles: 1024, DrainTimeout: Duration(24 * time.Hour), MaxLineBytes: MiB, PartialTimeout: Duration(5 * time.Second),
			Inputs: []Input{
				{Topic: "app", Paths: []string{"/tmp/logship/logs/app/*.log"}, Exclude: []string{"/tmp/logship/logs/app/*.gz"}, StartAt: "beginning",
					IgnoreOlder: Duration(168 * time.Hour), Multiline: Multiline{Pattern: `^\d{4}-\d{2}-\d{2}`, Match: "start", MaxLines: 500, MaxBytes: MiB, Timeout: Duration(time.Second)}},
				{Topic: "nginx-access", Paths: []string{"/tmp/logship/logs/nginx/access.log", "/tmp/logship/logs/nginx/access-*.log"}, StartAt: "end"},
			},
		}},
		{"agent-minimal.toml", &Agent{
			ID: host, StateDir: "/tmp/logship/agent", Aggregators: []string{"127.0.0.1:7450"},
			Compression: "zstd", Compressors: runtime.GOMAXPROCS(0), BatchBytes: 256 * KiB, BatchWait: Duration(200 * time.Millisecond),
			WindowBytes: 16 * MiB, ScanInterval: Duration(time.Second), PollInterval: Duration(250 * time.Millisecond),
			PositionsInterval: Duration(time.Second),
			MaxOpenFiles:      1024, DrainTimeout: Duration(24 * time.Hour), MaxLineBytes: MiB, PartialTimeout: Duration(5 * time.Second),
			Inputs: []Input{{Topic: "app", Paths: []string{"/tmp/logship/logs/app/*.log"}, StartAt: "beginning"}},
		}},
		{"aggregator.toml", &Aggregator{
			ID: "demo-aggregator", Listen: "127.0.0.1:7450", DataDir: "/tmp/logship/aggregator", Partitions: 4,
			Fsync: "always", FsyncInterval: Duration(time.Second), SegmentBytes: GiB, MaxFrameBytes: 16 * MiB,
			MetricsListen: "127.0.0.1:9401", SegmentAge: Duration(time.Hour), RetentionAge: Duration(7 * 24 * time.Hour),
			RetentionBytes: 100 * GiB, MaxOpenSegments: 128,
			IdleTimeout: Duration(2 * time.Minute), ReadTimeout: Duration(30 * time.Second),
		}},
		{"aggregator-minimal.toml", &Aggregator{
			ID: hostID("-7400"), Listen: ":7400", DataDir: "/tmp/logship/aggregator", Partitions: 4,
			Fsync: "always", FsyncInterval: Duration(time.Second), SegmentBytes: GiB, MaxFrameBytes: 16 * MiB,
			SegmentAge: Duration(time.Hour), RetentionAge: Duration(7 * 24 * time.Hour), MaxOpenSegments: 128,
			IdleTimeout: Duration(2 * time.Minute), ReadTimeout: Duration(30 * time.Second),
		}},
		{"sinks.toml", &Sinks{
			Aggregators: []string{"127.0.0.1:7450"}, MetricsListen: "127.0.0.1:9402",
			Sinks: []Sink{{
				Name: "local-file", Type: "file", Topics: []string{"app", "nginx-access"}, Dir: "/tmp/logship/sink",
				RollSize: 128 * MiB, RollInterval: Duration(15 * time.Minute), IdleTimeout: Duration(time.Minute),
				FetchBytes: 1 * MiB, Start: "earliest",
			}},
		}},
		{"sinks-minimal.toml", &Sinks{
			Aggregators: []string{"127.0.0.1:7450"},
			Sinks: []Sink{{
				Name: "local-file", Type: "file", Topics: []string{"app"}, Dir: "/tmp/logship/sink",
				RollSize: 128 * MiB, RollInterval: Duration(15 * time.Minute), IdleTimeout: Duration(time.Minute),
				FetchBytes: 1 * MiB, Start: "earliest",
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := loadAs(kindOf(tt.file), filepath.Join(testdata, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.toml")
	for _, kind := range []string{KindAgent, KindAggregator, KindSinks} {
		t.Run(kind, func(t *testing.T) {
			if _, err := loadAs(kind, path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v, want fs.ErrNotExist", err)
			}
		})
	}
	t.Run("check", func(t *testing.T) {
		if kind, err := Check(path); kind != "" || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %q, %v; want fs.ErrNotExist", kind, err)
		}
	})
}

// TestIDDefault checks the sanitized host name defaults, without caring
// what this machine's host name is.
func TestIDDefault(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	a := &Agent{}
	a.SetDefaults()
	g := &Aggregator{Listen: "0.0.0.0:7400"}
	g.SetDefaults()
	for _, id := range []string{a.ID, g.ID} {
		if strings.ContainsFunc(id, func(r rune) bool {
			return !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", r)
		}) {
			t.Errorf("id %q has characters outside [A-Za-z0-9._-]", id)
		}
	}
	if len(a.ID) != len([]rune(h)) && len(h) <= 128 {
		t.Errorf("agent id %q: want one character per character of %q", a.ID, h)
	}
	if g.ID != a.ID+"-7400" {
		t.Errorf("aggregator id %q, want %q", g.ID, a.ID+"-7400")
	}
}

// TestLoadWrongKind: a loader given a file of another kind says so, in one
// problem, instead of listing its keys as unknown.
func TestLoadWrongKind(t *testing.T) {
	t.Chdir(testdata)
	has := map[string]string{KindAgent: "state_dir, [[input]]", KindAggregator: "listen, data_dir", KindSinks: "[[sink]]"}
	for _, file := range []string{KindAgent, KindAggregator, KindSinks} {
		for _, loader := range []string{KindAgent, KindAggregator, KindSinks} {
			if file == loader {
				continue
			}
			t.Run(file+"_as_"+loader, func(t *testing.T) {
				_, err := loadAs(loader, file+".toml")
				checkErr(t, err, fmt.Sprintf("%s.toml: looks like %s config (it has %s), not %s config", file, kindName(file), has[file], kindName(loader)))
			})
		}
	}
	// A file of no kind, or of two, is loaded as asked.
	_, err := LoadAgent("nokind.bad.toml")
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.Problems) < 2 {
		t.Errorf("LoadAgent of a file of no kind: %v; want its problems as an agent config", err)
	}
}
