package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the operator's commands (cat, status, offsets) against
// aggregators with tokens.

// tokenFile writes secret to dir/name.token and returns its path.
func tokenFile(t testing.TB, dir, name, secret string) string {
	t.Helper()
	p := filepath.Join(dir, name+".token")
	writeFile(t, p, secret+"\n")
	return p
}

// startAggregatorID starts an aggregator with id, one partition per topic
// and its data and config under root/id, and returns it and its address.
// extra is appended to its config.
func startAggregatorID(t testing.TB, root, id, extra string) (*proc, string) {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "aggregator.toml")
	writeFile(t, cfg, fmt.Sprintf("id = %q\nlisten = \"127.0.0.1:0\"\ndata_dir = %q\npartitions = 1\n%s", id, filepath.Join(dir, "data"), extra))
	p := start(t, id, "aggregator", "--config", cfg)
	return p, logged(t, p, listenRE, id+" to listen")
}

// startAgentTo starts an agent with id that ships root/logs/*.log as topic
// app to the aggregator at addr, with the token in tokenFile.
func startAgentTo(t testing.TB, root, id, addr, tokenFile string) *proc {
	t.Helper()
	cfg := filepath.Join(root, id+".toml")
	writeFile(t, cfg, fmt.Sprintf("id = %q\nstate_dir = %q\naggregators = [%q]\ntoken_file = %q\nbatch_wait = \"20ms\"\nscan_interval = \"100ms\"\npoll_interval = \"20ms\"\n[[input]]\ntopic = \"app\"\npaths = [%q]\n",
		id, filepath.Join(root, id+"-state"), addr, tokenFile, filepath.Join(root, "logs", "*.log")))
	return start(t, id, "agent", "--config", cfg)
}

// waitEnd waits until partition 0 of topic app on the aggregator at addr
// ends at end, asking with the token in tokenFile.
func waitEnd(t testing.TB, addr, tokenFile string, end int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("app/0 on %s to end at %d", addr, end), 30*time.Second, func() bool {
		out, code := runCLI(t, "status", "--aggregator", addr, "--token-file", tokenFile, "--format", "json")
		if code != 0 {
			return false
		}
		var st struct {
			Partitions []struct {
				Topic     string `json:"topic"`
				EndOffset int64  `json:"end_offset"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status json: %v\n%s", err, out)
		}
		return len(st.Partitions) == 1 && st.Partitions[0].Topic == "app" && st.Partitions[0].EndOffset == end
	})
}

// TestOffsetsResetPartial: a reset over two aggregators, the second of
// which refuses it, says that the step on the first was applied; one that
// fails at its first step says nothing was.
func TestOffsetsResetPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	agentTok := tokenFile(t, root, "agent", "agent-secret-0123456789")
	opsTok := tokenFile(t, root, "ops", "ops-secret-0123456789ab")
	tokens := func(opsRole string) string {
		return fmt.Sprintf("[[token]]\nname = \"fleet\"\ntoken_file = %q\nroles = [\"agent\"]\n[[token]]\nname = \"ops\"\ntoken_file = %q\nroles = [%q]\n", agentTok, opsTok, opsRole)
	}
	agg1, addr1 := startAggregatorID(t, root, "agg-1", tokens("admin"))
	agg2, addr2 := startAggregatorID(t, root, "agg-2", tokens("consumer")) // ops may not reset here
	ag1 := startAgentTo(t, root, "web-01", addr1, agentTok)
	ag2 := startAgentTo(t, root, "web-02", addr2, agentTok)
	(&e2eStream{dir: filepath.Join(root, "logs"), name: "api"}).write(t, 10)
	waitEnd(t, addr1, opsTok, 10)
	waitEnd(t, addr2, opsTok, 10)

	reset := func(addrs ...string) (string, int) {
		args := []string{"offsets", "reset", "--sink", "archive", "--topic", "app", "--to-earliest", "--execute", "--token-file", opsTok}
		for _, a := range addrs {
			args = append(args, "--aggregator", a)
		}
		return runCLI(t, args...)
	}
	// Refused at its first step: nothing was applied, and it says nothing
	// of steps applied.
	out, code := reset(addr2, addr1)
	if code != 1 || !strings.Contains(out, "admin role") || strings.Contains(out, "applied") {
		t.Errorf("reset refused at its first step: exit %d, want 1, the refusal and no word of steps applied:\n%s", code, out)
	}
	if out, code := runCLI(t, "offsets", "list", "--aggregator", addr1, "--token-file", opsTok, "--format", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("after a reset refused at its first step, offsets list: exit %d\n%s", code, out)
	}
	// Refused at its second step: the first was applied, and it says so.
	out, code = reset(addr1, addr2)
	if want := "1 of the 2 steps was applied"; code != 1 || !strings.Contains(out, "admin role") || !strings.Contains(out, want) {
		t.Errorf("reset refused at its second step: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	// In the CLI's words, not the packages'.
	if want := "logship offsets: reset app/0 on agg-2: OffsetReset request to " + addr2 + ": the aggregator refused: "; !strings.HasPrefix(out, want) {
		t.Errorf("reset refused: got\n%s\nwant it to start with\n%s", out, want)
	}
	if out, code := runCLI(t, "offsets", "list", "--aggregator", addr1, "--token-file", opsTok, "--sink", "archive"); code != 0 || !regexpLine(out, `archive\s+app\s+agg-1\s+0\s+0\s`) {
		t.Errorf("the applied step is not in offsets list: exit %d\n%s", code, out)
	}
	for _, p := range []*proc{ag1, ag2, agg1, agg2} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", p.name, err)
		}
	}
}

// TestCLIConnectErrors: a failed connection reads "connect to ADDR: why",
// without the prefixes of the packages the CLI uses.
func TestCLIConnectErrors(t *testing.T) {
	const addr = "127.0.0.1:1" // nothing listens on port 1
	for _, args := range [][]string{
		{"status"},
		{"cat", "--topic", "app"},
		{"cat", "--topic", "app", "--follow"},
		{"offsets", "list"},
		{"offsets", "list", "--sink", "archive"},
		{"offsets", "reset", "--sink", "archive", "--to-earliest"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			out, code := runCLI(t, append(args, "--aggregator", addr)...)
			want := "logship " + args[0] + ": connect to " + addr + ": dial tcp " + addr + ": "
			if code != 1 || !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
				t.Errorf("exit %d, output\n%s\nwant exit 1 and one line starting %q", code, out, want)
			}
		})
	}
}

// TestSinkToken: with a token limited to a sink, status, cat and offsets
// list work with --sink naming it, and without it say to add it.
func TestSinkToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	agentTok := tokenFile(t, root, "agent", "agent-secret-0123456789")
	sinkTok := tokenFile(t, root, "sinks", "sinks-secret-0123456789")
	opsTok := tokenFile(t, root, "ops", "ops-secret-0123456789ab")
	agg, addr := startAggregatorID(t, root, "agg-1", fmt.Sprintf(`[[token]]
name = "fleet"
token_file = %q
roles = ["agent"]
[[token]]
name = "sinks"
token_file = %q
roles = ["consumer"]
ids = ["archive"]
[[token]]
name = "ops"
token_file = %q
roles = ["admin"]
`, agentTok, sinkTok, opsTok))
	ag := startAgentTo(t, root, "web-01", addr, agentTok)
	(&e2eStream{dir: filepath.Join(root, "logs"), name: "api"}).write(t, 10)
	waitEnd(t, addr, opsTok, 10)
	// Two sinks with offsets: archive, which the token may act for, and
	// another.
	for _, s := range []string{"archive", "other"} {
		if out, code := runCLI(t, "offsets", "reset", "--aggregator", addr, "--token-file", opsTok, "--sink", s, "--topic", "app", "--to-offset", "4", "--execute"); code != 0 {
			t.Fatalf("reset %s: exit %d\n%s", s, code, out)
		}
	}

	// Without --sink the aggregator refuses the token; the error says what
	// to add.
	for _, args := range [][]string{{"status"}, {"cat", "--topic", "app"}, {"offsets", "list"}} {
		out, code := runCLI(t, append(args, "--aggregator", addr, "--token-file", sinkTok)...)
		want := "logship " + args[0] + ": connect to " + addr + `: the aggregator refused: token "sinks" may not connect as "" (auth); ` +
			"if the token is limited to some sinks, add --sink NAME to connect as one of them\n"
		if code != 1 || out != want {
			t.Errorf("%v without --sink: exit %d, output\n%s\nwant exit 1 and\n%s", args, code, out, want)
		}
	}

	// With --sink they work, and show that sink's offsets.
	type status struct {
		Agents []struct{ ID string } `json:"agents"`
		Sinks  []struct {
			Sink      string `json:"sink"`
			Committed int64  `json:"committed"`
		} `json:"sinks"`
	}
	statusOf := func(token string, args ...string) status {
		t.Helper()
		out, code := runCLI(t, append([]string{"status", "--aggregator", addr, "--token-file", token, "--format", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("status %v: exit %d\n%s", args, code, out)
		}
		var st status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status json: %v\n%s", err, out)
		}
		return st
	}
	if st := statusOf(sinkTok, "--sink", "archive"); len(st.Sinks) != 1 || st.Sinks[0].Sink != "archive" || st.Sinks[0].Committed != 4 {
		t.Errorf("status --sink archive with the sink's token: %+v", st)
	}
	// An admin token sees every sink, and agents; --sink shows one sink.
	if st := statusOf(opsTok); len(st.Sinks) != 2 || len(st.Agents) != 1 {
		t.Errorf("status with the admin token: %+v", st)
	}
	if st := statusOf(opsTok, "--sink", "archive"); len(st.Sinks) != 1 || st.Sinks[0].Sink != "archive" || len(st.Agents) != 1 {
		t.Errorf("status --sink archive with the admin token: %+v", st)
	}
	out, code := runCLI(t, "cat", "--aggregator", addr, "--token-file", sinkTok, "--sink", "archive", "--topic", "app")
	if code != 0 || strings.Count(out, "\n") != 10 {
		t.Errorf("cat --sink archive: exit %d, want 10 lines\n%s", code, out)
	}
	out, code = runCLI(t, "offsets", "list", "--aggregator", addr, "--token-file", sinkTok, "--sink", "archive")
	if code != 0 || !regexpLine(out, `archive\s+app\s+agg-1\s+0\s+4\s+10\s+6\s`) {
		t.Errorf("offsets list --sink archive: exit %d\n%s", code, out)
	}
	// The token may not connect as another sink.
	out, code = runCLI(t, "status", "--aggregator", addr, "--token-file", sinkTok, "--sink", "other")
	if want := `token "sinks" may not connect as "other" (auth)`; code != 1 || !strings.Contains(out, want) || strings.Contains(out, "--sink NAME") {
		t.Errorf("status --sink other: exit %d, want 1 and %q without a hint\n%s", code, want, out)
	}
	for _, p := range []*proc{ag, agg} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", p.name, err)
		}
	}
}
