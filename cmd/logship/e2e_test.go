package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// binPath is the logship binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "logship-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "logship")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build logship: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a logship process started by a test, with its stderr captured.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(binPath, args...), done: make(chan struct{})}
	p.cmd.Stderr = p
	p.cmd.Stdout = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.output())
		}
	})
	return p
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) error {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not exit within 30s of %v", p.name, sig)
		return nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLogged waits until p has logged want. Output reaches the test
// through a pipe, after whatever the process did next may be visible.
func waitLogged(t testing.TB, p *proc, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %q", p.name, want), 10*time.Second, func() bool {
		return strings.Contains(p.output(), want)
	})
}

var (
	listenRE  = regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)
	metricsRE = regexp.MustCompile(`msg="serving metrics" addr=(127\.0\.0\.1:\d+)`)
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// e2eStream is one log file the test appends to, across rotations.
type e2eStream struct {
	dir, name string
	gen, seq  int
}

func (s *e2eStream) path() string { return filepath.Join(s.dir, s.name+".log") }

func (s *e2eStream) write(t testing.TB, n int) {
	f, err := os.OpenFile(s.path(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s payload %d lorem ipsum dolor sit amet id=%s.%d:%d\n", time.Now().Format(time.RFC3339Nano), i, s.name, s.gen, s.seq)
		s.seq++
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func (s *e2eStream) rotate(t testing.TB) {
	if err := os.Rename(s.path(), fmt.Sprintf("%s.%d", s.path(), s.gen+1)); err != nil {
		t.Fatal(err)
	}
	s.gen++
}

// publishedLines returns the lines of the sink's published files in file
// name order (per topic, aggregator and partition: offset order).
func publishedLines(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "_tmp" {
			return filepath.SkipDir
		}
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return lines
}

var idRE = regexp.MustCompile(` id=(\w+)\.(\d+):(\d+)$`)

// checkExactlyOnce checks that every stream's lines arrived once each, in
// order within each generation (file) of the stream.
func checkExactlyOnce(t testing.TB, lines []string, streams []*e2eStream) {
	t.Helper()
	next := map[string]int{}  // "name.gen" -> next seq expected
	first := map[string]int{} // "name.gen" -> first seq seen
	count := map[string]int{} // stream name -> lines
	for _, l := range lines {
		m := idRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line without id: %q", l)
		}
		src := m[1] + "." + m[2]
		var seq int
		fmt.Sscan(m[3], &seq)
		if n, ok := next[src]; ok && seq != n {
			t.Fatalf("%s: got seq %d, want %d (duplicate or out of order): %q", src, seq, n, l)
		}
		if _, ok := next[src]; !ok {
			first[src] = seq
		}
		next[src] = seq + 1
		count[m[1]]++
	}
	for _, s := range streams {
		want := 0
		for g := 0; g <= s.gen; g++ {
			src := fmt.Sprintf("%s.%d", s.name, g)
			if _, ok := next[src]; !ok {
				continue
			}
			if first[src] != want {
				t.Fatalf("%s starts at seq %d, want %d: lines lost at a rotation", src, first[src], want)
			}
			want = next[src]
		}
		if want != s.seq || count[s.name] != s.seq {
			t.Fatalf("stream %s: %d lines arrived (last seq %d), %d written", s.name, count[s.name], want-1, s.seq)
		}
	}
}

// TestEndToEnd runs aggregator, sink and agent as separate processes over
// loopback; lines are written while the agent runs; one file is rotated by
// rename; the agent is stopped with SIGTERM and later killed with SIGKILL,
// each time restarted; garbage is sent to the aggregator's port. Every line
// must arrive in the sink's published files exactly once, in order per file.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	logs := filepath.Join(root, "logs")
	for _, d := range []string{"app", "web"} {
		os.MkdirAll(filepath.Join(logs, d), 0o755)
	}
	agg, addr := startAggregator(t, root, 3, "")

	out := filepath.Join(root, "archive")
	sinkCfg := filepath.Join(root, "sinks.toml")
	writeFile(t, sinkCfg, fmt.Sprintf(`aggregators = [%q]
[[sink]]
name = "archive"
type = "file"
topics = ["app", "web"]
dir = %q
roll_size = "256KiB"
roll_interval = "2s"
idle_timeout = "300ms"
`, addr, out))
	sink := start(t, "sink", "sink", "--config", sinkCfg)

	agentCfg := filepath.Join(root, "agent.toml")
	writeFile(t, agentCfg, fmt.Sprintf(`id = "web-01"
state_dir = %q
aggregators = [%q]
batch_wait = "20ms"
batch_bytes = "64KiB"
scan_interval = "100ms"
poll_interval = "20ms"
positions_interval = "100ms"
[[input]]
topic = "app"
paths = [%q]
[[input]]
topic = "web"
paths = [%q]
`, filepath.Join(root, "agent-state"), addr, filepath.Join(logs, "app", "*.log"), filepath.Join(logs, "web", "*.log")))
	ag := start(t, "agent", "agent", "--config", agentCfg)

	streams := []*e2eStream{
		{dir: filepath.Join(logs, "app"), name: "api"},
		{dir: filepath.Join(logs, "app"), name: "worker"},
		{dir: filepath.Join(logs, "web"), name: "access"},
	}
	const rounds, perRound = 40, 400
	for r := 0; r < rounds; r++ {
		for _, s := range streams {
			s.write(t, perRound)
		}
		switch r {
		case 8: // a clean restart
			if err := ag.stop(syscall.SIGTERM); err != nil {
				t.Fatalf("agent exit after SIGTERM: %v", err)
			}
			ag = start(t, "agent (2)", "agent", "--config", agentCfg)
		case 12: // a clean aggregator restart, on the same address
			if err := agg.stop(syscall.SIGTERM); err != nil {
				t.Fatalf("aggregator exit after SIGTERM: %v", err)
			}
			waitLogged(t, ag, "aggregator shutting down: reconnecting")
			cfg := filepath.Join(root, "aggregator.toml")
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, cfg, strings.Replace(string(b), `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", addr), 1))
			agg = start(t, "aggregator (2)", "aggregator", "--config", cfg)
		case 16: // rename rotation; the rotated name does not match the glob
			streams[0].rotate(t)
		case 20: // rename rotation to a name that matches the glob
			if err := os.Rename(streams[2].path(), filepath.Join(streams[2].dir, "access-old.log")); err != nil {
				t.Fatal(err)
			}
			streams[2].gen++
		case 26: // a crash
			ag.stop(syscall.SIGKILL)
			ag = start(t, "agent (3)", "agent", "--config", agentCfg)
		case 30: // garbage on the aggregator's port
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			c.Close()
		}
		time.Sleep(10 * time.Millisecond) // pacing: lines keep arriving while the agent runs
	}
	total := 0
	for _, s := range streams {
		total += s.seq
	}
	waitFor(t, fmt.Sprintf("%d lines in published files", total), 90*time.Second, func() bool {
		return len(publishedLines(t, out)) >= total
	})
	checkExactlyOnce(t, publishedLines(t, out), streams)
	waitLogged(t, agg, "bad magic")
	m := metricsRE.FindStringSubmatch(agg.output())
	if m == nil {
		t.Fatal("aggregator did not log its metrics address")
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`logship_aggregator_rejected_connections_total{reason="handshake"} 1`, "logship_aggregator_batches_in_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// cat reads the same records back from the aggregator.
	catOut, err := exec.Command(binPath, "cat", "--aggregator", addr, "--topic", "web", "--format", "json").Output()
	if err != nil {
		t.Fatalf("cat: %v", err)
	}
	var webLines []string
	sc := bufio.NewScanner(bytes.NewReader(catOut))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Topic, Aggregator, Timestamp, Host, Source, Line string
			Partition                                        int
			Offset                                           int64
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("cat json: %v: %s", err, sc.Bytes())
		}
		if r.Topic != "web" || r.Aggregator != "agg-1" || r.Host != "web-01" || !strings.HasPrefix(r.Source, logs) {
			t.Fatalf("cat record %+v", r)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
			t.Fatalf("cat timestamp: %v", err)
		}
		webLines = append(webLines, r.Line)
	}
	if len(webLines) != streams[2].seq {
		t.Fatalf("cat printed %d web records, want %d", len(webLines), streams[2].seq)
	}

	out2, err := exec.Command(binPath, "cat", "--aggregator", addr, "--topic", "nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), `topic "nope" not found on `+addr) {
		t.Errorf("cat of a missing topic: %v, %s", err, out2)
	}

	for _, p := range []*proc{ag, sink, agg} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", p.name, err)
		}
	}

	// The offline tools read what the aggregator left.
	data := filepath.Join(root, "data")
	vout, err := exec.Command(binPath, "log", "verify", "--data-dir", data).CombinedOutput()
	if err != nil || !strings.Contains(string(vout), ": 0 problems") {
		t.Fatalf("log verify: %v\n%s", err, vout)
	}
	dout, err := exec.Command(binPath, "log", "dump", "--data-dir", data, "--topic", "web").Output()
	if err != nil {
		t.Fatalf("log dump: %v", err)
	}
	if n := strings.Count(string(dout), " id=access."); n != streams[2].seq {
		t.Fatalf("log dump printed %d web records, want %d", n, streams[2].seq)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "agent.toml")
	writeFile(t, bad, "id = \"a\"\nstate_dir = \"/tmp/x\"\naggregators = [\"127.0.0.1:7450\"]\nagregators = 1\n[[input]]\ntopic = \"app\"\npaths = [\"/var/log/*.log\"]\n")
	out, err := exec.Command(binPath, "config", "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("config check of a bad file: err %v, output %s", err, out)
	}
	if !strings.Contains(string(out), bad+":4:") || !strings.Contains(string(out), "agregators") {
		t.Fatalf("want file:line naming the unknown key, got %s", out)
	}
	good, _ := filepath.Glob("../../testdata/config/*.toml")
	var goods []string
	for _, g := range good {
		if !strings.HasSuffix(g, ".bad.toml") {
			goods = append(goods, g)
		}
	}
	if len(goods) < 3 {
		t.Fatalf("example configs missing: %v", goods)
	}
	// The examples name token and certificate files of a production host:
	// check them without reading those.
	out, err = exec.Command(binPath, append([]string{"config", "check", "--syntax-only"}, goods...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("example configs: %v\n%s", err, out)
	}
}

// TestRoleWithConfigOfAnotherKind: a role started with the config of
// another role says so in one line.
func TestRoleWithConfigOfAnotherKind(t *testing.T) {
	for _, c := range []struct{ role, file, want string }{
		{"agent", "aggregator.toml", "looks like an aggregator config (it has listen, data_dir), not an agent config"},
		{"aggregator", "sinks.toml", "looks like a sinks config (it has [[sink]]), not an aggregator config"},
		{"sink", "agent.toml", "looks like an agent config (it has state_dir, [[input]]), not a sinks config"},
	} {
		path := filepath.Join("../../testdata/config", c.file)
		out, code := runCLI(t, c.role, "--config", path)
		if want := "logship " + c.role + ": " + path + ": " + c.want + "\n"; code != 1 || out != want {
			t.Errorf("logship %s --config %s: exit %d, output\n%s\nwant exit 1 and\n%s", c.role, c.file, code, out, want)
		}
	}
}

// TestConfigCheckFiles: config check reads the files a config names, as
// the role does at start, and reports those that would stop it with the
// config's file:line and key; --syntax-only does not read them.
func TestConfigCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ca := wiretest.NewCA(t, dir, "ca")
	old := ca.Issue(t, wiretest.Leaf{Name: "old",
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	empty := filepath.Join(dir, "empty.token")
	writeFile(t, empty, "\n")
	cfg := filepath.Join(dir, "aggregator.toml")
	writeFile(t, cfg, fmt.Sprintf("listen = \"127.0.0.1:0\"\ndata_dir = %q\n[tls]\ncert_file = %q\nkey_file = %q\n[[token]]\nname = \"fleet\"\ntoken_file = %q\nroles = [\"agent\"]\n",
		filepath.Join(dir, "data"), old.Cert, old.Key, empty))
	out, code := runCLI(t, "config", "check", cfg)
	want := cfg + ":3: tls: wire: tls: certificate " + old.Cert + " (CN=old) expired at 2021-01-01T00:00:00Z\n" +
		cfg + ":8: token[0].token_file: " + empty + " is empty\n"
	if code != 1 || out != want {
		t.Errorf("config check: exit %d, output\n%s\nwant exit 1 and\n%s", code, out, want)
	}
	if out, code := runCLI(t, "config", "check", "--syntax-only", cfg); code != 0 || out != cfg+": ok (aggregator config)\n" {
		t.Errorf("config check --syntax-only: exit %d\n%s", code, out)
	}
	// The aggregator refuses to start on the same grounds.
	if out, code := runCLI(t, "aggregator", "--config", cfg); code != 1 || !strings.Contains(out, "expired at 2021-01-01T00:00:00Z") {
		t.Errorf("aggregator with the config: exit %d\n%s", code, out)
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	out, err := exec.Command(binPath, "demo", "--dir", t.TempDir(), "--lines", "20000").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"exactly once         0 missing, 0 duplicated, 0 out of order", "OK: every line arrived exactly once"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage: logship COMMAND"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"agent"}, 1, "--config is required"},
		{[]string{"cat", "--topic", "app"}, 1, "--aggregator is required"},
		{[]string{"cat", "--aggregator", "127.0.0.1:1", "--topic", "a/b"}, 1, "invalid topic"},
		{[]string{"version"}, 0, "logship "},
		{[]string{"cat", "--aggregator", "127.0.0.1:1", "--topic", "app"}, 1, "connection refused"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			out, err := exec.Command(binPath, c.args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != c.code || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %d, output %q; want exit %d containing %q", code, out, c.code, c.want)
			}
		})
	}
}
