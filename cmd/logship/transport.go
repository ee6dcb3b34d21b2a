package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"logship/aggregator"
	"logship/config"
	"logship/internal/wire"
	"logship/sinks"
)

// The transport's security, from config to the roles' options: token and
// TLS files are read and checked here, at start, so that a missing file, a
// key that does not match or an expired certificate stops the command
// with the file's name. They are read by the config's own methods, which
// config.CheckFiles (logship config check) calls too.

// clientSecurity is a client's TLS config and token. log hears of a
// client certificate's rotation.
func clientSecurity(t config.TLS, a config.ClientAuth, log *slog.Logger) (sinks.Security, error) {
	var sec sinks.Security
	tok, err := a.Secret()
	if err != nil {
		return sec, err
	}
	sec.Token = tok
	if sec.TLS, err = t.ClientConfig(time.Now(), log); err != nil {
		return sec, fmt.Errorf("tls: %w", err)
	}
	return sec, nil
}

// serverSecurity sets an aggregator's TLS config, tokens and timeouts.
func serverSecurity(c *config.Aggregator, o *aggregator.Options) error {
	cfg, err := c.TLS.ServerConfig(time.Now(), o.Logger)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	o.TLS = cfg
	for i := range c.Tokens {
		t := &c.Tokens[i]
		secret, err := t.Secret()
		if err != nil {
			return fmt.Errorf("token %q: %w", t.Name, err)
		}
		o.Tokens = append(o.Tokens, aggregator.Token{Name: t.Name, Secret: secret, Roles: t.Roles, IDs: t.IDs})
	}
	o.IdleTimeout, o.ReadTimeout = c.IdleTimeout.D(), c.ReadTimeout.D()
	return nil
}

// dial connects to the aggregator at addr as the consumer name ("" for
// none), with errors in the CLI's words (aggError). An aggregator that
// refuses a connection without a name for auth may have been given a
// token limited to some sinks, which must connect as one of them: the
// error says how.
func dial(ctx context.Context, sec sinks.Security, addr, name string) (*sinks.Client, error) {
	c, err := sec.Dial(ctx, addr, name)
	if err == nil {
		return c, nil
	}
	err = aggError(addr, err)
	if name == "" && wire.IsRemote(err, wire.CodeAuth) {
		err = fmt.Errorf("%w; if the token is limited to some sinks, add --sink NAME to connect as one of them", err)
	}
	return nil, err
}

// aggError puts err, from a connection to the aggregator at addr, in the
// CLI's words. The sinks client's errors (*sinks.OpError) say what failed
// and where in that package's terms ("sinks: connect to ..."); here they
// read "connect to ADDR: ..." or "Status request to ADDR: ...", and a
// refusal by the aggregator (*wire.RemoteError) "the aggregator refused:
// ...". The chain stays (errors.Is and errors.As work on the result).
func aggError(addr string, err error) error {
	var op *sinks.OpError
	if !errors.As(err, &op) {
		return fmt.Errorf("aggregator %s: %w", addr, err)
	}
	what := "connect to " + op.Addr
	if op.Op != "connect" {
		what = op.Op + " request to " + op.Addr
	}
	cause := op.Err.Error()
	var re *wire.RemoteError
	if errors.As(op.Err, &re) {
		cause = fmt.Sprintf("the aggregator refused: %s (%s)", re.Message, re.Code)
	}
	return &cliError{msg: what + ": " + cause, err: err}
}

// cliError is an error with a message of the CLI's own, and its cause.
type cliError struct {
	msg string
	err error
}

func (e *cliError) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *cliError) Unwrap() error { return e.err }
