package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire/wiretest"
)

// TestCheckFiles: CheckFiles reads the files a config names, as the role
// does at start, and reports those that do not load at the key naming
// them; Check does not read them.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ca := wiretest.NewCA(t, dir, "ca")
	good := ca.Issue(t, wiretest.Leaf{Name: "good"})
	other := ca.Issue(t, wiretest.Leaf{Name: "other"})
	old := ca.Issue(t, wiretest.Leaf{Name: "old",
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	soon := ca.Issue(t, wiretest.Leaf{Name: "soon", NotBefore: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC)})
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("ok.token", "0123456789abcdef0123\n")
	empty := write("empty.token", " \n\n")
	password := write("cassandra.password", "secret\n")
	missing := filepath.Join(dir, "missing")

	// The configs' text, with {name} replaced by the path of a file.
	files := strings.NewReplacer("{dir}", dir, "{token}", token, "{empty}", empty, "{password}", password, "{missing}", missing,
		"{ca}", ca.File, "{cert}", good.Cert, "{key}", good.Key, "{other-key}", other.Key,
		"{old}", old.Cert, "{old-key}", old.Key, "{soon}", soon.Cert, "{soon-key}", soon.Key)
	const agent = "state_dir = \"/var/lib/logship-agent\"\naggregators = [\"127.0.0.1:7450\"]\n[[input]]\ntopic = \"app\"\npaths = [\"/var/log/*.log\"]\n"
	const aggregator = "listen = \"127.0.0.1:7450\"\ndata_dir = \"/var/lib/logship\"\n"
	const sinks = "aggregators = [\"127.0.0.1:7450\"]\n[[sink]]\nname = \"local\"\ntype = \"file\"\ntopics = [\"app\"]\ndir = \"/var/lib/logship-sink\"\n"
	const cassandra = "[[sink]]\nname = \"db\"\ntype = \"cassandra\"\ntopics = [\"app\"]\nhosts = [\"db1\"]\nkeyspace = \"logs\"\ndead_letter_dir = \"/var/lib/logship-dl\"\nusername = \"logship\"\n"
	tests := []struct {
		name, config string
		want         string // with {file} for the config's path
	}{
		{"agent", "token_file = \"{token}\"\n" + agent + "[tls]\nca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n", ""},
		{"agent token_file missing", "token_file = \"{missing}\"\n" + agent,
			"{file}:1: token_file: open {missing}: no such file or directory"},
		{"agent token_file empty", "token_file = \"{empty}\"\n" + agent,
			"{file}:1: token_file: {empty} is empty"},
		{"agent certificate expired", agent + "[tls]\ncert_file = \"{old}\"\nkey_file = \"{old-key}\"\n",
			"{file}:6: tls: wire: tls: certificate {old} (CN=old) expired at 2021-01-01T00:00:00Z"},
		{"agent ca_file missing", agent + "[tls]\nca_file = \"{missing}\"\n",
			"{file}:7: tls.ca_file: wire: tls: open {missing}: no such file or directory"},
		{"aggregator", aggregator + "[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nca_file = \"{ca}\"\n[[token]]\nname = \"fleet\"\ntoken_file = \"{token}\"\nroles = [\"agent\"]\n", ""},
		{"aggregator key mismatch", aggregator + "[tls]\ncert_file = \"{cert}\"\nkey_file = \"{other-key}\"\n",
			"{file}:3: tls: wire: tls: load {cert} and {other-key}: tls: private key does not match public key"},
		{"aggregator certificate not valid yet", aggregator + "[tls]\ncert_file = \"{soon}\"\nkey_file = \"{soon-key}\"\n",
			"{file}:3: tls: wire: tls: certificate {soon} (CN=soon) is not valid before 2100-01-01T00:00:00Z"},
		{"aggregator key_file missing", aggregator + "[tls]\ncert_file = \"{cert}\"\nkey_file = \"{missing}\"\n",
			"{file}:5: tls.key_file: wire: tls: open {missing}: no such file or directory"},
		{"aggregator token_file missing and empty", aggregator +
			"[[token]]\nname = \"fleet\"\ntoken_file = \"{token}\"\nroles = [\"agent\"]\n" +
			"[[token]]\nname = \"sinks\"\ntoken_file = \"{missing}\"\nroles = [\"consumer\"]\n" +
			"[[token]]\nname = \"ops\"\ntoken_file = \"{empty}\"\nroles = [\"admin\"]\n",
			"{file}:9: token[1].token_file: open {missing}: no such file or directory\n{file}:13: token[2].token_file: {empty} is empty"},
		{"sinks", "token_file = \"{token}\"\n" + sinks + cassandra + "password_file = \"{password}\"\n[tls]\nenabled = true\n", ""},
		{"sinks files missing", "token_file = \"{empty}\"\n" + sinks + cassandra + "password_file = \"{missing}\"\n[tls]\ncert_file = \"{missing}\"\nkey_file = \"{key}\"\n",
			"{file}:1: token_file: {empty} is empty\n" +
				"{file}:16: sink[1].password_file: open {missing}: no such file or directory\n" +
				"{file}:18: tls.cert_file: wire: tls: open {missing}: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tt.name, " ", "-")+".toml", files.Replace(tt.config))
			wantKind := strings.Fields(tt.name)[0]
			kind, err := Check(path)
			if kind != wantKind || err != nil {
				t.Fatalf("Check: %q, %v; want %q and no problem (it reads no file)", kind, err, wantKind)
			}
			kind, err = CheckFiles(path, time.Now())
			if kind != wantKind {
				t.Errorf("CheckFiles: kind %q, want %q", kind, wantKind)
			}
			checkErr(t, err, strings.ReplaceAll(files.Replace(tt.want), "{file}", path))
		})
	}
}

// TestFileErrors: the methods the roles load files with at start name the
// key in a *KeyError, and keep the cause.
func TestFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	var ke *KeyError
	_, err := (&ClientAuth{TokenFile: missing}).Secret()
	if !errors.As(err, &ke) || ke.Key != "token_file" || !errors.Is(err, fs.ErrNotExist) || err.Error() != "token_file: open "+missing+": no such file or directory" {
		t.Errorf("ClientAuth.Secret: %v", err)
	}
	_, err = (&TLS{CAFile: missing}).ClientConfig(time.Now(), nil)
	if !errors.As(err, &ke) || ke.Key != "ca_file" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("TLS.ClientConfig: %v", err)
	}
	_, err = (&CassandraSink{PasswordFile: missing}).PasswordSecret()
	if !errors.As(err, &ke) || ke.Key != "password_file" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CassandraSink.PasswordSecret: %v", err)
	}
	if cfg, err := (&TLS{}).ServerConfig(time.Now(), nil); cfg != nil || err != nil {
		t.Errorf("ServerConfig without TLS: %v, %v; want nil, nil", cfg, err)
	}
}
