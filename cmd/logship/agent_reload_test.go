package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentReload: SIGHUP applies an added [[input]] to the running agent
// process (its file is shipped); a bad config is refused with its
// file:line errors and the agent keeps running its inputs; a key that
// needs a restart is named.
func TestAgentReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	agg, addr := startAggregator(t, root, 1, "")
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		writeFile(t, filepath.Join(root, d, d+".log"), fmt.Sprintf("%s line 1\n%s line 2\n", d, d))
	}
	cfg := filepath.Join(root, "agent.toml")
	base := fmt.Sprintf("id = \"agent-1\"\nstate_dir = %q\naggregators = [%q]\nbatch_wait = \"10ms\"\nscan_interval = \"50ms\"\n\n[[input]]\ntopic = \"a\"\npaths = [%q]\n",
		filepath.Join(root, "state"), addr, filepath.Join(root, "a", "*.log"))
	inputB := fmt.Sprintf("\n[[input]]\ntopic = \"b\"\npaths = [%q]\n", filepath.Join(root, "b", "*.log"))
	writeFile(t, cfg, base)
	ag := start(t, "agent", "agent", "--config", cfg, "--log-level", "debug")
	stored := func(topic string) string {
		out, _ := runCLI(t, "cat", "--aggregator", addr, "--topic", topic)
		return out
	}
	waitFor(t, "topic a shipped", 20*time.Second, func() bool { return strings.Contains(stored("a"), "a line 2") })
	hup := func(content, want string) {
		t.Helper()
		writeFile(t, cfg, content)
		n := strings.Count(ag.output(), "reloading config")
		if err := ag.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, want, 10*time.Second, func() bool {
			out := ag.output()
			return strings.Count(out, "reloading config") > n && strings.Contains(out[strings.LastIndex(out, "reloading config"):], want)
		})
	}
	hup(base+"\n[[input]]\ntopic = \"bad topic\"\npaths = [\"relative/*.log\"]\n", "reload refused: the running config stays")
	if !strings.Contains(ag.output(), cfg+":12: input[1].topic") {
		t.Errorf("the refusal does not name the file and line:\n%s", ag.output())
	}
	hup(base+inputB, "msg=\"reload applied\" inputs=2")
	waitFor(t, "topic b shipped", 20*time.Second, func() bool { return strings.Contains(stored("b"), "b line 2") })
	hup(strings.Replace(base, "batch_wait = \"10ms\"", "batch_wait = \"20ms\"", 1)+inputB, "keys=batch_wait")
	// The first input still ships.
	f, err := os.OpenFile(filepath.Join(root, "a", "a.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a line 3\n")
	f.Close()
	waitFor(t, "topic a still shipped", 20*time.Second, func() bool { return strings.Contains(stored("a"), "a line 3") })
	if n := strings.Count(stored("a"), "a line 1"); n != 1 {
		t.Errorf("a line 1 stored %d times", n)
	}
	if err := ag.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	agg.stop(syscall.SIGTERM)
}
