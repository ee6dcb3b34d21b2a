package aggregator

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"logship/internal/wire"
)

// Roles a token may grant. A Hello as an agent needs RoleAgent, as a
// consumer RoleConsumer or RoleAdmin; an OffsetReset needs RoleAdmin.
const (
	RoleAgent    = "agent"
	RoleConsumer = "consumer"
	RoleAdmin    = "admin"
)

// Token is a secret a client presents in its Hello, and what it may do.
type Token struct {
	Name   string   // for logs and errors; never the secret
	Secret string   // the token itself; at least 16 bytes
	Roles  []string // RoleAgent, RoleConsumer, RoleAdmin
	// IDs, when set, are the only client ids (agent ids, sink names) the
	// token may connect as: a per-agent token cannot speak for another
	// agent.
	IDs []string
}

// MinTokenLen is the shortest secret a Token may have.
const MinTokenLen = 16

// grant is what an accepted Hello may do.
type grant struct {
	token string // the token's name; "" when auth is off
	admin bool
	// id is the Hello's id when the token is limited to some ids
	// (Token.IDs), else "". A consumer so limited may commit, reset and
	// fetch the offsets of that one sink only: the ids would mean nothing
	// if every request could name another sink.
	id      string
	limited bool
}

// checkSink refuses a request (what: "offset commit", ...) that acts for
// sink when the token is limited to the ids of its Hello and sink is not
// the Hello's id. The error closes the connection with an auth Error.
func (g grant) checkSink(what, sink string) error {
	if !g.limited || sink == g.id {
		return nil
	}
	return &peerError{reason: rejectAuth, code: wire.CodeAuth,
		msg: fmt.Sprintf("%s refused: token %q connected as %q may not act for sink %q", what, g.token, g.id, sink)}
}

// tokens checks Hellos against the configured tokens. Nil means auth is
// off: every Hello is accepted, with the admin role.
type tokens struct {
	byDigest map[[sha256.Size]byte]*Token
}

// newTokens checks ts and indexes them by the SHA-256 of their secret, so
// that a lookup takes the same time whichever token (if any) matches.
func newTokens(ts []Token) (*tokens, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	var errs []error
	t := &tokens{byDigest: make(map[[sha256.Size]byte]*Token, len(ts))}
	names := map[string]bool{}
	for i := range ts {
		tk := &ts[i]
		if tk.Name == "" || names[tk.Name] {
			errs = append(errs, fmt.Errorf("aggregator: token %d: name %q empty or repeated", i, tk.Name))
		}
		names[tk.Name] = true
		if len(tk.Secret) < MinTokenLen {
			errs = append(errs, fmt.Errorf("aggregator: token %q: secret shorter than %d bytes", tk.Name, MinTokenLen))
		}
		if len(tk.Roles) == 0 {
			errs = append(errs, fmt.Errorf("aggregator: token %q: no roles", tk.Name))
		}
		for _, r := range tk.Roles {
			if r != RoleAgent && r != RoleConsumer && r != RoleAdmin {
				errs = append(errs, fmt.Errorf("aggregator: token %q: unknown role %q", tk.Name, r))
			}
		}
		d := sha256.Sum256([]byte(tk.Secret))
		if _, dup := t.byDigest[d]; dup {
			errs = append(errs, fmt.Errorf("aggregator: token %q: same secret as another token", tk.Name))
		}
		t.byDigest[d] = tk
	}
	return t, errors.Join(errs...)
}

// check decides whether a Hello may connect. The refusal's message goes
// to the client, so it names neither the tokens nor their secrets.
func (t *tokens) check(h *wire.Hello) (grant, error) {
	if t == nil {
		return grant{admin: true}, nil
	}
	if h.Token == "" {
		return grant{}, errors.New("authentication required: this aggregator needs a token (token or token_file in the client's config)")
	}
	d := sha256.Sum256([]byte(h.Token))
	tk := t.byDigest[d]
	// The map found it by digest; compare the secrets in constant time
	// anyway, so that no timing says how close a guess was.
	if tk == nil || subtle.ConstantTimeCompare([]byte(tk.Secret), []byte(h.Token)) != 1 {
		return grant{}, errors.New("authentication failed: unknown token")
	}
	need := RoleAgent
	if h.Role == wire.RoleConsumer {
		need = RoleConsumer
	}
	admin := slices.Contains(tk.Roles, RoleAdmin)
	if !slices.Contains(tk.Roles, need) && !(need == RoleConsumer && admin) {
		return grant{}, fmt.Errorf("token %q does not have the %s role", tk.Name, need)
	}
	if len(tk.IDs) > 0 && !slices.Contains(tk.IDs, h.ID) {
		return grant{}, fmt.Errorf("token %q may not connect as %q", tk.Name, h.ID)
	}
	return grant{token: tk.Name, admin: admin, id: h.ID, limited: len(tk.IDs) > 0}, nil
}
