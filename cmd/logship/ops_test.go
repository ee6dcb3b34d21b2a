package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startAggregator starts an aggregator process with partitions
// partitions, its data under root and its metrics on a port of its own,
// and returns it and the address it listens on. extra is appended to its
// config.
func startAggregator(t testing.TB, root string, partitions int, extra string) (*proc, string) {
	t.Helper()
	cfg := filepath.Join(root, "aggregator.toml")
	writeFile(t, cfg, fmt.Sprintf("id = \"agg-1\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = %q\npartitions = %d\n%s",
		filepath.Join(root, "data"), partitions, extra))
	p := start(t, "aggregator", "aggregator", "--config", cfg)
	return p, logged(t, p, listenRE, "the aggregator to listen")
}

// logged waits for p to log a line re matches and returns its first group.
func logged(t testing.TB, p *proc, re *regexp.Regexp, what string) string {
	t.Helper()
	var v string
	waitFor(t, what, 20*time.Second, func() bool {
		m := re.FindStringSubmatch(p.output())
		if m != nil {
			v = m[1]
		}
		return m != nil
	})
	return v
}

// epochLines returns the lines of the published files of one epoch (0: the
// files without +e<N>), in name order.
func epochLines(t testing.TB, dir string, epoch int) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
	sort.Strings(files)
	var lines []string
	for _, f := range files {
		e := 0
		if i := strings.LastIndex(f, "+e"); i > 0 {
			fmt.Sscanf(f[i:], "+e%d.log", &e)
		}
		if e != epoch {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return lines
}

func runCLI(t testing.TB, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binPath, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestReplayByTime ships lines in two phases, lets a running file sink
// publish them all, then resets the sink to the time between the phases:
// the sink follows without a restart and re-delivers exactly the second
// phase, from its first record, into files named with the new epoch. It
// also runs offsets list and status against the same aggregator, and the
// CLI's errors.
func TestReplayByTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	logs := filepath.Join(root, "logs")
	os.MkdirAll(logs, 0o755)
	agg, addr := startAggregator(t, root, 1, "")

	out := filepath.Join(root, "archive")
	sinkCfg := filepath.Join(root, "sinks.toml")
	writeFile(t, sinkCfg, fmt.Sprintf("aggregators = [%q]\nmetrics_listen = \"127.0.0.1:0\"\n[[sink]]\nname = \"archive\"\ntype = \"file\"\ntopics = [\"app\"]\ndir = %q\nidle_timeout = \"200ms\"\n", addr, out))
	sink := start(t, "sink", "sink", "--config", sinkCfg)
	agentCfg := filepath.Join(root, "agent.toml")
	writeFile(t, agentCfg, fmt.Sprintf("id = \"web-01\"\nmetrics_listen = \"127.0.0.1:0\"\nstate_dir = %q\naggregators = [%q]\nbatch_wait = \"20ms\"\nscan_interval = \"100ms\"\npoll_interval = \"20ms\"\n[[input]]\ntopic = \"app\"\npaths = [%q]\n",
		filepath.Join(root, "agent-state"), addr, filepath.Join(logs, "*.log")))
	ag := start(t, "agent", "agent", "--config", agentCfg)

	s := &e2eStream{dir: logs, name: "api"}
	s.write(t, 500)
	waitFor(t, "phase 1 published", 30*time.Second, func() bool { return len(epochLines(t, out, 0)) == 500 })
	between := time.Now()
	s.write(t, 300)
	waitFor(t, "phase 2 published", 30*time.Second, func() bool { return len(epochLines(t, out, 0)) == 800 })

	// Every role is ready, and its metrics show where it stands.
	for _, p := range []*proc{agg, sink, ag} {
		m := metricsRE.FindStringSubmatch(p.output())
		if m == nil {
			t.Fatalf("%s did not log its metrics address", p.name)
		}
		if code, body := httpGet(t, "http://"+m[1]+"/readyz"); code != 200 {
			t.Errorf("%s /readyz: %d %s", p.name, code, body)
		}
		_, body := httpGet(t, "http://"+m[1]+"/metrics")
		want := map[string]string{
			"aggregator": `logship_aggregator_partition_end_offset{partition="0",topic="app"} 800`,
			"sink":       `logship_sink_lag_records{aggregator="agg-1",partition="0",sink="archive",topic="app"} 0`,
			"agent":      `logship_agent_window_full_seconds_total`,
		}[p.name]
		if !strings.Contains(body, want) {
			t.Errorf("%s metrics lack %q", p.name, want)
		}
	}

	// The status shows the partition, the agent and the sink at the end.
	js, code := runCLI(t, "status", "--aggregator", addr, "--format", "json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, js)
	}
	var st struct {
		Agents []struct {
			ID        string   `json:"id"`
			Topics    []string `json:"topics"`
			OpenFiles int      `json:"open_files"`
		} `json:"agents"`
		Partitions []struct {
			Topic, Aggregator string
			Partition         int
			StartOffset       *int64 `json:"start_offset"`
			EndOffset         int64  `json:"end_offset"`
			Bytes             int64  `json:"bytes"`
		} `json:"partitions"`
		Sinks []struct {
			Sink, Topic, Aggregator string
			Partition               int
			Committed               int64 `json:"committed"`
			Lag                     *int64
		} `json:"sinks"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, js)
	}
	if len(st.Agents) != 1 || st.Agents[0].ID != "web-01" || st.Agents[0].OpenFiles != 1 || len(st.Partitions) != 1 || st.Partitions[0].EndOffset != 800 ||
		st.Partitions[0].StartOffset == nil || st.Partitions[0].Bytes == 0 || st.Partitions[0].Aggregator != "agg-1" ||
		len(st.Sinks) != 1 || st.Sinks[0].Sink != "archive" || st.Sinks[0].Committed != 800 || st.Sinks[0].Lag == nil || *st.Sinks[0].Lag != 0 {
		t.Fatalf("status: %s", js)
	}
	table, code := runCLI(t, "status", "--aggregator", addr)
	if code != 0 || !strings.Contains(table, "web-01") || !strings.Contains(table, "archive") {
		t.Fatalf("status table: exit %d\n%s", code, table)
	}
	list, code := runCLI(t, "offsets", "list", "--aggregator", addr)
	if code != 0 || !regexpLine(list, `archive\s+app\s+agg-1\s+0\s+800\s+800\s+0\s`) {
		t.Fatalf("offsets list: exit %d\n%s", code, list)
	}

	// A dry run changes nothing.
	at := between.UTC().Format(time.RFC3339Nano)
	plan, code := runCLI(t, "offsets", "reset", "--aggregator", addr, "--sink", "archive", "--to-time", at)
	if code != 0 || !regexpLine(plan, `archive\s+app\s+agg-1\s+0\s+800\s+500\s+-300`) || !strings.Contains(plan, "Dry run") {
		t.Fatalf("dry run: exit %d\n%s", code, plan)
	}
	if list2, _ := runCLI(t, "offsets", "list", "--aggregator", addr); list2 != list {
		t.Fatalf("a dry run changed the offsets:\n%s", list2)
	}
	// Executed, the running sink follows and re-delivers phase 2 only.
	t.Logf("logship status:\n%s\nlogship offsets list:\n%s\nlogship offsets reset (dry run):\n%s", table, list, plan)
	done, code := runCLI(t, "offsets", "reset", "--aggregator", addr, "--sink", "archive", "--to-time", at, "--execute")
	if code != 0 || !strings.Contains(done, "Applied") {
		t.Fatalf("reset: exit %d\n%s", code, done)
	}
	waitFor(t, "the replay published", 30*time.Second, func() bool { return len(epochLines(t, out, 1)) == 300 })
	replayed := epochLines(t, out, 1)
	first := epochLines(t, out, 0)
	for i, l := range replayed {
		if l != first[500+i] {
			t.Fatalf("replayed line %d = %q, want %q", i, l, first[500+i])
		}
	}
	waitLogged(t, sink, "offset reset by an operator")

	// Errors name what was wrong.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"offsets", "list", "--aggregator", addr, "--sink", "nope"}, `sink "nope" has no committed offsets`},
		{[]string{"offsets", "reset", "--aggregator", addr, "--sink", "nope", "--to-earliest"}, `sink "nope" has no committed offsets`},
		{[]string{"offsets", "reset", "--aggregator", addr, "--sink", "archive", "--to-time", "2001-01-01T00:00:00Z"}, "before the earliest record of app/0 on agg-1"},
		{[]string{"offsets", "reset", "--aggregator", addr, "--sink", "archive", "--to-offset", "9999"}, "outside the stored range [0, 800]"},
		{[]string{"offsets", "reset", "--aggregator", addr, "--sink", "archive"}, "give exactly one of"},
		{[]string{"offsets", "reset", "--aggregator", addr, "--sink", "archive", "--by-duration", "2h"}, "want a negative duration"},
		{[]string{"status", "--aggregator", "127.0.0.1:1"}, "connect to 127.0.0.1:1"},
		{[]string{"offsets", "list", "--aggregator", "127.0.0.1:1"}, "connection refused"},
		{[]string{"offsets", "list"}, "--aggregator is required"},
	} {
		got, code := runCLI(t, c.args...)
		if code != 1 || !strings.Contains(got, c.want) {
			t.Errorf("%v: exit %d, output %q; want exit 1 containing %q", c.args, code, got, c.want)
		}
	}
	for _, p := range []*proc{ag, sink, agg} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", p.name, err)
		}
	}
}

func regexpLine(s, re string) bool {
	for _, l := range strings.Split(s, "\n") {
		if matched, _ := regexpMatch(re, l); matched {
			return true
		}
	}
	return false
}

func regexpMatch(re, s string) (bool, error) { return regexp.MatchString(re, s) }

// TestAggregatorReload: SIGHUP applies a new retention; a bad config is
// refused with its file:line errors and the server keeps running; a key
// that needs a restart is named.
func TestAggregatorReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	agg, addr := startAggregator(t, root, 1, "")
	cfg := filepath.Join(root, "aggregator.toml")
	base := fmt.Sprintf("id = \"agg-1\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = %q\npartitions = 1\n", filepath.Join(root, "data"))
	hup := func(content, want string) {
		t.Helper()
		writeFile(t, cfg, content)
		n := strings.Count(agg.output(), "reloading config")
		if err := agg.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, want, 10*time.Second, func() bool {
			out := agg.output()
			return strings.Count(out, "reloading config") > n && strings.Contains(out[strings.LastIndex(out, "reloading config"):], want)
		})
	}
	hup(base+"retention_bytes = \"10GiB\"\n", "msg=\"reload applied\" retention_age=168h0m0s retention_bytes=10737418240")
	hup(base+"retention_bytes = \"lots\"\n", "reload refused: the running config stays")
	if !strings.Contains(agg.output(), cfg+":6: retention_bytes") {
		t.Errorf("the refusal does not name the file and line:\n%s", agg.output())
	}
	hup(strings.Replace(base, "partitions = 1", "partitions = 4", 1)+"retention_bytes = \"10GiB\"\n", "keys=partitions")
	// Still serving.
	if out, code := runCLI(t, "status", "--aggregator", addr); code != 0 {
		t.Fatalf("status after reloads: exit %d\n%s", code, out)
	}
	if err := agg.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdUnits: every unit runs a role that exists with the flags it
// passes, and checks the config it names first.
func TestSystemdUnits(t *testing.T) {
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 3 {
		t.Fatalf("units: %v", units)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		var start, pre string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				start = v
			}
			if v, ok := strings.CutPrefix(l, "ExecStartPre="); ok {
				pre = v
			}
		}
		f := strings.Fields(start)
		if len(f) != 4 || f[0] != "/usr/local/bin/logship" || f[2] != "--config" {
			t.Fatalf("%s: ExecStart=%s", u, start)
		}
		if want := "/usr/local/bin/logship config check " + f[3]; pre != want {
			t.Errorf("%s: ExecStartPre=%s, want %s", u, pre, want)
		}
		if out, code := runCLI(t, f[1], "--help"); code != 0 || !strings.Contains(out, "--config") {
			t.Errorf("%s: logship %s --help: exit %d\n%s", u, f[1], code, out)
		}
		example := filepath.Join("../../testdata/config", filepath.Base(f[3]))
		if out, code := runCLI(t, "config", "check", example); code != 0 {
			t.Errorf("%s: the example %s does not check: %s", u, example, out)
		}
	}
}

// TestHelpEverySubcommand: --help of every command and subcommand exits 0
// and shows an example.
func TestHelpEverySubcommand(t *testing.T) {
	var all [][]string
	for _, c := range commands() {
		all = append(all, []string{c.name})
	}
	all = append(all, []string{"offsets", "list"}, []string{"offsets", "reset"}, []string{"config", "check"},
		[]string{"log", "dump"}, []string{"log", "verify"})
	for _, args := range all {
		out, code := runCLI(t, append(args, "--help")...)
		if code != 0 || !strings.Contains(out, "Example") {
			t.Errorf("logship %s --help: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSinkNotReady: a sink worker that cannot consume from an aggregator
// says why on /readyz, naming it: not reached (nothing listens there), or
// its credentials refused (here a token limited to another sink's name),
// which is a configuration error it also logs at ERROR on every attempt.
func TestSinkNotReady(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, tc := range []struct {
		name string
		// setup returns the aggregator's address and the sink config's
		// extra keys.
		setup  func(t *testing.T, root string) (addr, extra string)
		reason string // %s: the aggregator's address
		errLog string // logged at ERROR at least twice, when set
	}{
		{"unreachable", func(*testing.T, string) (string, string) { return "127.0.0.1:1", "" },
			"sink s: aggregators not reached: %s", ""},
		{"credentials refused", func(t *testing.T, root string) (string, string) {
			_, addr := startAggregator(t, root, 1, `
[[token]]
name = "sinks"
token = "sinks-secret-0123456789"
roles = ["consumer"]
ids = ["archive"]
`)
			return addr, "token = \"sinks-secret-0123456789\"\n"
		}, "sink s: credentials refused (check token or token_file) by: %s", `level=ERROR msg="aggregator refused this sink's credentials: check token or token_file"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			agg, extra := tc.setup(t, root)
			cfg := filepath.Join(root, "sinks.toml")
			writeFile(t, cfg, fmt.Sprintf("aggregators = [%q]\nmetrics_listen = \"127.0.0.1:0\"\n%s[[sink]]\nname = \"s\"\ntype = \"file\"\ntopics = [\"app\"]\ndir = %q\n",
				agg, extra, filepath.Join(root, "out")))
			sink := start(t, "sink", "sink", "--config", cfg)
			addr := logged(t, sink, metricsRE, "metrics address")
			reason := fmt.Sprintf(tc.reason, agg)
			waitFor(t, "not ready: "+reason, 20*time.Second, func() bool {
				code, body := httpGet(t, "http://"+addr+"/readyz")
				return code == 503 && strings.Contains(body, reason)
			})
			if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
				t.Errorf("/healthz: %d", code)
			}
			if tc.errLog != "" {
				waitFor(t, "the refusal logged at every attempt", 20*time.Second, func() bool {
					return strings.Count(sink.output(), tc.errLog) >= 2
				})
			}
			if err := sink.stop(syscall.SIGTERM); err != nil {
				t.Errorf("sink exit after SIGTERM: %v", err)
			}
		})
	}
}

// TestMetricsDocumented: every metric the binary defines is listed in
// the README.
func TestMetricsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`desc\("(logship_[a-z_]+)"`)
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			n++
			if !strings.Contains(string(readme), "`"+m[1]+"`") {
				t.Errorf("metric %s (%s) is not in README.md's Metrics section", m[1], f)
			}
		}
	}
	if n < 50 {
		t.Fatalf("found only %d metrics: did the way they are defined change?", n)
	}
}
