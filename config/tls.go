package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"logship/internal/wire"
)

// The transport's security keys, shared by the three kinds of config:
// a [tls] table on each side, the client's token (agent and sinks), and
// the aggregator's [[token]] tables. Files are named here and read when
// the role starts, by the methods below (TLS.ServerConfig and
// ClientConfig, through internal/wire; ClientAuth.Secret; Token.Secret),
// which report a file that does not load as a *KeyError naming the key
// and, in its cause, the file. CheckFiles calls the same methods.

// KeyError is a key whose value does not work when the role starts: a
// file it names cannot be read or does not load. Key is relative to the
// table of the method that returned it ("token_file", "cert_file"), or ""
// for the table itself; Err names the file. Test with errors.As.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string {
	if e.Key == "" {
		return e.Err.Error()
	}
	return e.Key + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *KeyError) Unwrap() error { return e.Err }

// TLS is a [tls] table: the PEM files of one side of a TLS connection.
// An empty table (or none) means plain TCP.
type TLS struct {
	CertFile string `toml:"cert_file"` // aggregator: required for TLS; clients: for mutual TLS
	KeyFile  string `toml:"key_file"`  // the private key of cert_file
	// CAFile: on the aggregator, the CA that signs clients' certificates,
	// which turns mutual TLS on; on clients, the CA that signs the
	// aggregators' certificates (default: the system's roots).
	CAFile     string `toml:"ca_file"`
	ServerName string `toml:"server_name"` // clients only: the name the aggregator's certificate must carry; default the host of each address
	Enabled    bool   `toml:"enabled"`     // clients only: TLS with the system's roots and no other key
}

// On reports whether t asks for TLS.
func (t *TLS) On() bool {
	return t.Enabled || t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != ""
}

// ServerConfig loads the files of an aggregator's [tls], as
// wire.ServerTLSConfig does (checked valid at now; log hears of their
// rotation); nil when t asks for no TLS. A file that does not load is a
// *KeyError (see keyError).
func (t *TLS) ServerConfig(now time.Time, log *slog.Logger) (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	cfg, err := wire.ServerTLSConfig(wire.TLSFiles{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile}, now, log)
	if err != nil {
		return nil, t.keyError(err)
	}
	return cfg, nil
}

// ClientConfig loads the files of an agent's or sink worker's [tls], as
// wire.ClientTLSConfig does; nil when t asks for no TLS. A file that does
// not load is a *KeyError (see keyError).
func (t *TLS) ClientConfig(now time.Time, log *slog.Logger) (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	cfg, err := wire.ClientTLSConfig(wire.TLSFiles{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile, ServerName: t.ServerName}, now, log)
	if err != nil {
		return nil, t.keyError(err)
	}
	return cfg, nil
}

// keyError wraps an error of loading t's files in a *KeyError: the key of
// the file that cannot be read, or "" (the table) for one that does not
// parse, a key that does not match its certificate or a certificate not
// valid now, whose message names the files.
func (t *TLS) keyError(err error) *KeyError {
	key := ""
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch pe.Path {
		case t.CertFile:
			key = "cert_file"
		case t.KeyFile:
			key = "key_file"
		case t.CAFile:
			key = "ca_file"
		}
	}
	return &KeyError{Key: key, Err: err}
}

func (t *TLS) check(c *checker, server bool) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		key := "tls.key_file"
		if t.CertFile == "" {
			key = "tls.cert_file"
		}
		c.add(key, fmt.Sprintf("%s: tls.cert_file and tls.key_file go together", key))
	}
	if server {
		if t.On() && t.CertFile == "" && t.KeyFile == "" {
			c.add("tls", "tls: an aggregator needs tls.cert_file and tls.key_file")
		}
		if t.ServerName != "" {
			c.errorf("tls.server_name", "only for clients (agents and sinks)")
		}
		if t.Enabled {
			c.errorf("tls.enabled", "only for clients; an aggregator's tls is on when it has cert_file and key_file")
		}
	}
}

// ClientAuth is a client's token: at most one of token and token_file.
type ClientAuth struct {
	Token     string `toml:"token"`      // the secret itself; prefer token_file
	TokenFile string `toml:"token_file"` // a file holding the secret (surrounding white space ignored)
}

func (a *ClientAuth) check(c *checker) {
	if a.Token != "" && a.TokenFile != "" {
		c.add("token_file", "token_file: set token or token_file, not both")
	}
}

// Secret returns the token, read from token_file when that is set; "" when
// neither is. A token_file that cannot be read or holds only white space
// is a *KeyError.
func (a *ClientAuth) Secret() (string, error) { return secret(a.Token, a.TokenFile, "token_file") }

// Token is an aggregator's [[token]] table: a secret clients present, and
// what it allows.
type Token struct {
	Name      string   `toml:"name"`       // required, unique; appears in logs instead of the secret
	Token     string   `toml:"token"`      // the secret, at least 16 characters; or token_file
	TokenFile string   `toml:"token_file"` // a file holding the secret
	Roles     []string `toml:"roles"`      // required: "agent", "consumer", "admin" (admin: consumer, and offset resets)
	IDs       []string `toml:"ids"`        // optional: the only agent ids or sink names this token may connect as
}

// minTokenLen is the shortest inline token accepted (aggregator.MinTokenLen).
const minTokenLen = 16

// Secret returns the token's secret, read from token_file when that is
// set. A token_file that cannot be read or holds only white space is a
// *KeyError.
func (t *Token) Secret() (string, error) { return secret(t.Token, t.TokenFile, "token_file") }

func (t *Token) check(c *checker, at string) {
	c.required(at+".name", t.Name)
	switch {
	case t.Token != "" && t.TokenFile != "":
		c.add(at+".token_file", fmt.Sprintf("%s.token_file: set token or token_file, not both", at))
	case t.Token == "" && t.TokenFile == "":
		c.add(at, fmt.Sprintf("%s: missing token or token_file", at))
	case t.Token != "" && len(t.Token) < minTokenLen:
		c.errorf(at+".token", "too short: want at least %d characters", minTokenLen)
	}
	if c.nonEmpty(at+".roles", len(t.Roles), "role") {
		for i, r := range t.Roles {
			c.oneOf(indexKey(at+".roles", i), r, "agent", "consumer", "admin")
		}
	}
	for i, id := range t.IDs {
		c.name(indexKey(at+".ids", i), "id", id)
	}
}

func checkTokens(c *checker, ts []Token) {
	names := map[string]int{}
	for i := range ts {
		at := indexKey("token", i)
		ts[i].check(c, at)
		if j, ok := names[ts[i].Name]; ok && ts[i].Name != "" {
			c.errorf(at+".name", "token name %q is already used by %s", ts[i].Name, indexKey("token", j))
		} else {
			names[ts[i].Name] = i
		}
	}
}

func secret(inline, file, key string) (string, error) {
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", &KeyError{Key: key, Err: err}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &KeyError{Key: key, Err: fmt.Errorf("%s is empty", file)}
	}
	return s, nil
}
