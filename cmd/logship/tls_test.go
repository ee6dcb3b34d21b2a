package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// TestMutualTLSAndTokens runs the three roles from their config files
// with mutual TLS and tokens, as an operator would set them up, and
// checks that lines arrive, that the CLI connects the same way, that only
// an admin token resets offsets, and that a wrong token or an untrusted
// certificate is refused with a clear message.
func TestMutualTLSAndTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	pki := filepath.Join(root, "pki")
	os.MkdirAll(pki, 0o700)
	ca := wiretest.NewCA(t, pki, "ca")
	server := ca.Issue(t, wiretest.Leaf{Name: "aggregator", Hosts: []string{"127.0.0.1"}})
	client := ca.Issue(t, wiretest.Leaf{Name: "web-01"})
	sinkCert := ca.Issue(t, wiretest.Leaf{Name: "sinks"})
	opsCert := ca.Issue(t, wiretest.Leaf{Name: "ops"})
	rogue := wiretest.NewCA(t, pki, "rogue").Issue(t, wiretest.Leaf{Name: "rogue"})
	tok := func(name, secret string) string {
		p := filepath.Join(root, name+".token")
		writeFile(t, p, secret+"\n")
		return p
	}
	agentTok, sinkTok, opsTok := tok("agent", "agent-secret-0123456789"), tok("sinks", "sinks-secret-0123456789"), tok("ops", "ops-secret-0123456789ab")
	wrongTok := tok("wrong", "not-a-known-token-0000")

	agg, addr := startAggregator(t, root, 1, fmt.Sprintf(`
[tls]
cert_file = %q
key_file = %q
ca_file = %q

[[token]]
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
`, server.Cert, server.Key, ca.File, agentTok, sinkTok, opsTok))

	logs := filepath.Join(root, "logs")
	os.MkdirAll(logs, 0o755)
	out := filepath.Join(root, "archive")
	sinkCfg := filepath.Join(root, "sinks.toml")
	writeFile(t, sinkCfg, fmt.Sprintf(`aggregators = [%q]
token_file = %q
[tls]
ca_file = %q
cert_file = %q
key_file = %q
[[sink]]
name = "archive"
type = "file"
topics = ["app"]
dir = %q
idle_timeout = "200ms"
`, addr, sinkTok, ca.File, sinkCert.Cert, sinkCert.Key, out))
	sink := start(t, "sink", "sink", "--config", sinkCfg)
	agentCfg := filepath.Join(root, "agent.toml")
	writeFile(t, agentCfg, fmt.Sprintf(`id = "web-01"
state_dir = %q
aggregators = [%q]
token_file = %q
batch_wait = "20ms"
[tls]
ca_file = %q
cert_file = %q
key_file = %q
[[input]]
topic = "app"
paths = [%q]
`, filepath.Join(root, "agent-state"), addr, agentTok, ca.File, client.Cert, client.Key, filepath.Join(logs, "*.log")))
	ag := start(t, "agent", "agent", "--config", agentCfg)

	s := &e2eStream{dir: logs, name: "api"}
	s.write(t, 300)
	waitFor(t, "lines published over mutual TLS", 30*time.Second, func() bool { return len(epochLines(t, out, 0)) == 300 })
	checkExactlyOnce(t, epochLines(t, out, 0), []*e2eStream{s})

	tlsFlags := []string{"--aggregator", addr, "--tls-ca", ca.File, "--tls-cert", opsCert.Cert, "--tls-key", opsCert.Key}
	cli := func(token string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), "LOGSHIP_TOKEN=")
		if token != "" {
			cmd.Args = append(cmd.Args, "--token-file", token)
		}
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(b), code
	}
	// The CLI connects the same way.
	if o, code := cli(opsTok, append([]string{"cat", "--topic", "app"}, tlsFlags...)...); code != 0 || strings.Count(o, "\n") != 300 {
		t.Fatalf("cat over mutual TLS: exit %d, %d lines\n%.500s", code, strings.Count(o, "\n"), o)
	}
	// Only an admin token resets offsets; the sinks' consumer token may not.
	reset := append([]string{"offsets", "reset", "--sink", "archive", "--to-earliest", "--execute"}, tlsFlags...)
	if o, code := cli(sinkTok, reset...); code != 1 || !strings.Contains(o, "admin") {
		t.Errorf("reset with a consumer token: exit %d\n%s", code, o)
	}
	if o, code := cli(opsTok, reset...); code != 0 || !strings.Contains(o, "Applied") {
		t.Errorf("reset with the admin token: exit %d\n%s", code, o)
	}
	// A token limited to the sink lists that sink's offsets.
	if o, code := cli(sinkTok, append([]string{"offsets", "list", "--sink", "archive"}, tlsFlags...)...); code != 0 || !strings.Contains(o, "archive") {
		t.Errorf("offsets list --sink archive with the sink's own token: exit %d\n%s", code, o)
	}
	// A wrong token, a missing certificate and an untrusted one are refused
	// with messages that say so.
	status := append([]string{"status"}, tlsFlags...)
	for _, c := range []struct {
		name, token string
		args        []string
		want        string
	}{
		{"wrong token", wrongTok, status, "token"},
		{"no client certificate", opsTok, []string{"status", "--aggregator", addr, "--tls-ca", ca.File}, "certificate"},
		{"untrusted client certificate", opsTok, []string{"status", "--aggregator", addr, "--tls-ca", ca.File, "--tls-cert", rogue.Cert, "--tls-key", rogue.Key}, "certificate"},
		{"untrusted server", opsTok, []string{"status", "--aggregator", addr, "--tls-ca", filepath.Join(pki, "rogue.pem"), "--tls-cert", opsCert.Cert, "--tls-key", opsCert.Key}, "certificate"},
		{"plain TCP to a TLS aggregator", opsTok, []string{"status", "--aggregator", addr}, "TLS"},
	} {
		o, code := cli(c.token, c.args...)
		if code != 1 || !strings.Contains(o, c.want) {
			t.Errorf("%s: exit %d, want 1 and a message naming %q:\n%s", c.name, code, c.want, o)
		}
		t.Logf("%s: %s", c.name, strings.TrimSpace(o))
	}
	// A certificate rotated on disk is what new connections get, without
	// a restart; the connections already open go on.
	next := ca.Issue(t, wiretest.Leaf{Name: "aggregator-2", Hosts: []string{"127.0.0.1"}})
	for _, f := range [][2]string{{next.Key, server.Key}, {next.Cert, server.Cert}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, f[1]+".new", string(data))
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
	served := func() string {
		pair, err := tls.LoadX509KeyPair(opsCert.Cert, opsCert.Key)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})
		if err != nil {
			t.Logf("dial: %v", err)
			return ""
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	waitFor(t, "the rotated certificate served", 30*time.Second, func() bool { return served() == "aggregator-2" })
	// The log line is written after the new files are in use, and reaches
	// us through a pipe: wait for it rather than expect it already.
	waitLogged(t, agg, "certificate files changed")
	s.write(t, 100)
	waitFor(t, "lines published after the rotation", 30*time.Second, func() bool { return len(epochLines(t, out, 0)) == 400 })
	if o, code := cli(opsTok, status...); code != 0 {
		t.Errorf("status after the rotation: exit %d\n%s", code, o)
	}

	for _, p := range []*proc{ag, sink, agg} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", p.name, err)
		}
	}
}
