package aggregator

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/internal/wire/wiretest"
)

const (
	agentSecret    = "agent-secret-0123456789"
	web01Secret    = "web01-secret-0123456789"
	consumerSecret = "consumer-secret-0123456789"
	adminSecret    = "admin-secret-0123456789"
)

func withTokens(o *Options) {
	o.Tokens = []Token{
		{Name: "fleet", Secret: agentSecret, Roles: []string{RoleAgent}},
		{Name: "web-01", Secret: web01Secret, Roles: []string{RoleAgent}, IDs: []string{"web-01"}},
		{Name: "sinks", Secret: consumerSecret, Roles: []string{RoleConsumer}},
		{Name: "ops", Secret: adminSecret, Roles: []string{RoleAdmin}},
	}
}

// TestAuth: with tokens configured, a Hello without a known token, or
// with a token that lacks the role or the id, is refused with an auth
// error that names neither tokens nor secrets; only an admin token may
// reset offsets.
func TestAuth(t *testing.T) {
	ts := start(t, t.TempDir(), withTokens)
	for _, tc := range []struct {
		name  string
		hello wire.Hello
		want  string // "" accepted
	}{
		{"no token", wire.Hello{Role: wire.RoleAgent, ID: "db-01"}, "authentication required"},
		{"wrong token", wire.Hello{Role: wire.RoleAgent, ID: "db-01", Token: "guess-guess-guess-guess"}, "unknown token"},
		{"consumer token as agent", wire.Hello{Role: wire.RoleAgent, ID: "db-01", Token: consumerSecret}, `token "sinks" does not have the agent role`},
		{"agent token as consumer", wire.Hello{Role: wire.RoleConsumer, ID: "s", Token: agentSecret}, "does not have the consumer role"},
		{"per-agent token, other id", wire.Hello{Role: wire.RoleAgent, ID: "db-01", Token: web01Secret}, `token "web-01" may not connect as "db-01"`},
		{"shared agent token", wire.Hello{Role: wire.RoleAgent, ID: "db-01", Token: agentSecret}, ""},
		{"per-agent token", wire.Hello{Role: wire.RoleAgent, ID: "web-01", Token: web01Secret}, ""},
		{"consumer", wire.Hello{Role: wire.RoleConsumer, ID: "s", Token: consumerSecret}, ""},
		{"admin as consumer", wire.Hello{Role: wire.RoleConsumer, Token: adminSecret}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := wire.DialContext(context.Background(), ts.Addr(), tc.hello, 5*time.Second)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.NetConn().Close()
				return
			}
			if !isRemote(err, wire.CodeAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an auth error with %q", err, tc.want)
			}
			for _, secret := range []string{agentSecret, web01Secret, consumerSecret, adminSecret} {
				if strings.Contains(err.Error(), secret) || strings.Contains(ts.logs.String(), secret) {
					t.Fatal("a secret leaked into an error or the log")
				}
			}
		})
	}
	if n := ts.Stats().Rejected["auth"]; n != 5 {
		t.Fatalf("rejected auth %d, want 5", n)
	}
	if got := len(ts.logs.lines("level=WARN", "connection refused", "unknown token")); got != 1 {
		t.Fatalf("%d log lines for the unknown token:\n%s", got, ts.logs)
	}

	t.Run("reset needs admin", func(t *testing.T) {
		cc := dialConsumerAs(t, ts.Addr(), consumerSecret)
		if r := cc.commit("s", "app", 0, 5); r.Status != wire.CommitOK {
			t.Fatalf("commit %+v", r)
		}
		cc.req++
		m := wire.OffsetReset{Req: cc.req, Sink: "s", Topic: "app", Partition: 0, Offset: 0}
		_, err := cc.call(wire.TypeOffsetReset, m.Encode(nil), wire.TypeOffsetCommitted)
		if !isRemote(err, wire.CodeAuth) || !strings.Contains(err.Error(), `token "sinks" does not have the admin role`) {
			t.Fatalf("reset with a consumer token: %v", err)
		}
		admin := dialConsumerAs(t, ts.Addr(), adminSecret)
		if r := admin.reset("s", "app", 0, 0); r.Status != wire.CommitOK {
			t.Fatalf("reset with the admin token: %+v", r)
		}
		if offs := admin.offsets("s", "app"); len(offs) != 1 || offs[0].Offset != 0 || offs[0].Epoch != 1 {
			t.Fatalf("offsets after reset %+v", offs)
		}
		if n := ts.Stats().OffsetResets; n != 1 {
			t.Fatalf("%d resets counted", n)
		}
	})
}

func dialConsumerAs(t testing.TB, addr, token string) *consumerClient {
	t.Helper()
	c, _, err := wire.DialContext(context.Background(), addr, wire.Hello{Role: wire.RoleConsumer, ID: "test-sink", Token: token}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.NetConn().Close() })
	return &consumerClient{t: t, c: c}
}

// TestNoAuthAllowsReset: without tokens, resets are allowed (as before).
func TestNoAuthAllowsReset(t *testing.T) {
	ts := start(t, t.TempDir(), nil)
	if r := dialConsumer(t, ts.Addr()).reset("s", "app", 0, 0); r.Status != wire.CommitOK {
		t.Fatalf("%+v", r)
	}
}

// TestAuthIDLimitedTokenActsForItsSinkOnly: a consumer or admin token
// limited to some ids (Token.IDs) commits, resets and fetches the offsets
// of the sink its Hello named and of no other: a request naming another
// sink closes the connection with an auth error, logged and counted, and
// leaves that sink's offsets as they were. Its status shows its own sink
// only.
func TestAuthIDLimitedTokenActsForItsSinkOnly(t *testing.T) {
	const (
		sinkASecret  = "sink-a-secret-0123456789"
		adminASecret = "admin-a-secret-0123456789"
	)
	ts := start(t, t.TempDir(), func(o *Options) {
		o.Tokens = []Token{
			{Name: "sink-a", Secret: sinkASecret, Roles: []string{RoleConsumer}, IDs: []string{"sink-a"}},
			{Name: "admin-a", Secret: adminASecret, Roles: []string{RoleAdmin}, IDs: []string{"sink-a"}},
			{Name: "sinks", Secret: consumerSecret, Roles: []string{RoleConsumer}},
		}
	})
	dialAs := func(t *testing.T, id, token string) *consumerClient {
		t.Helper()
		c, _, err := wire.DialContext(context.Background(), ts.Addr(), wire.Hello{Role: wire.RoleConsumer, ID: id, Token: token}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.NetConn().Close() })
		return &consumerClient{t: t, c: c}
	}
	// sink-b commits with the shared token, which has no id limits.
	if r := dialAs(t, "sink-b", consumerSecret).commit("sink-b", "app", 0, 1000); r.Status != wire.CommitOK {
		t.Fatalf("sink-b's own commit: %+v", r)
	}

	for _, tc := range []struct {
		name, token string
		typ         wire.Type
		payload     []byte
		want        wire.Type
		msg         string
	}{
		{"commit", sinkASecret, wire.TypeOffsetCommit,
			(&wire.OffsetCommit{Req: 1, Sink: "sink-b", Topic: "app", Offset: 5}).Encode(nil), wire.TypeOffsetCommitted,
			`offset commit refused: token "sink-a" connected as "sink-a" may not act for sink "sink-b"`},
		{"fetch", sinkASecret, wire.TypeOffsetFetch,
			(&wire.OffsetFetch{Req: 1, Sink: "sink-b", Topic: "app"}).Encode(nil), wire.TypeOffsets,
			`offset fetch refused: token "sink-a"`},
		{"reset", adminASecret, wire.TypeOffsetReset,
			(&wire.OffsetReset{Req: 1, Sink: "sink-b", Topic: "app", Offset: 0}).Encode(nil), wire.TypeOffsetCommitted,
			`offset reset refused: token "admin-a" connected as "sink-a" may not act for sink "sink-b"`},
	} {
		t.Run(tc.name+" for another sink", func(t *testing.T) {
			_, err := dialAs(t, "sink-a", tc.token).call(tc.typ, tc.payload, tc.want)
			if !isRemote(err, wire.CodeAuth) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want an auth error with %q", err, tc.msg)
			}
		})
	}
	if n := ts.Stats().Rejected["auth"]; n != 3 {
		t.Errorf("rejected auth %d, want 3", n)
	}
	if got := len(ts.logs.lines("level=WARN", "closing connection", "may not act for sink")); got != 3 {
		t.Errorf("%d log lines for the refusals, want 3:\n%s", got, ts.logs)
	}
	if got := dialAs(t, "sink-b", consumerSecret).offsets("sink-b", "app"); len(got) != 1 || got[0].Offset != 1000 || got[0].Epoch != 0 {
		t.Errorf("sink-b's committed offsets %+v, want offset 1000 epoch 0", got)
	}

	t.Run("own sink", func(t *testing.T) {
		a := dialAs(t, "sink-a", sinkASecret)
		if r := a.commit("sink-a", "app", 0, 7); r.Status != wire.CommitOK {
			t.Fatalf("commit %+v", r)
		}
		admin := dialAs(t, "sink-a", adminASecret)
		if r := admin.reset("sink-a", "app", 0, 3); r.Status != wire.CommitOK {
			t.Fatalf("reset %+v", r)
		}
		if got := a.offsets("sink-a", "app"); len(got) != 1 || got[0].Offset != 3 || got[0].Epoch != 1 {
			t.Fatalf("sink-a's offsets %+v, want offset 3 epoch 1", got)
		}
		// Its status names its own sink only, and no agents; the shared
		// token, limited to no ids, sees both sinks.
		st := a.status()
		if len(st.Sinks) != 1 || st.Sinks[0].Sink != "sink-a" || st.Sinks[0].Committed != 3 || len(st.Agents) != 0 || st.Agents == nil {
			t.Errorf("status of a token limited to sink-a: sinks %+v agents %+v", st.Sinks, st.Agents)
		}
		if st := dialAs(t, "", consumerSecret).status(); len(st.Sinks) != 2 {
			t.Errorf("status of the shared token: sinks %+v, want sink-a and sink-b", st.Sinks)
		}
	})
}

// TestTimeouts: a client that connects and says nothing, one that goes
// quiet after its handshake, and one that trickles a frame byte by byte
// are each cut with a logged reason and counted; one that sends
// heartbeats stays connected across many idle timeouts.
func TestTimeouts(t *testing.T) {
	const idle, read = 300 * time.Millisecond, 300 * time.Millisecond
	ts := start(t, t.TempDir(), func(o *Options) { o.IdleTimeout, o.ReadTimeout = idle, read })

	t.Run("silent before hello", func(t *testing.T) {
		nc, err := net.Dial("tcp", ts.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); err == nil {
			t.Fatal("read a byte")
		}
		waitUntil(t, func() bool {
			return len(ts.logs.lines("handshake failed", "remote="+nc.LocalAddr().String(), "no preamble", "idle timeout")) == 1
		})
	})
	t.Run("idle after hello", func(t *testing.T) {
		a := dialAgent(t, ts.Addr(), "quiet-01")
		_, err := a.readAck()
		if !isRemote(err, wire.CodeTimeout) || !errors.Is(err, wire.ErrRemote) || !strings.Contains(err.Error(), "idle timeout") {
			t.Fatalf("got %v, want a timeout Error frame", err)
		}
		local := a.c.NetConn().LocalAddr().String()
		if n := len(ts.logs.lines("level=WARN", "remote="+local, "idle timeout")); n != 1 {
			t.Fatalf("%d log lines:\n%s", n, ts.logs)
		}
	})
	t.Run("slowloris", func(t *testing.T) {
		a := dialAgent(t, ts.Addr(), "slow-01")
		frame := append([]byte{0, 0, 0, 100, byte(wire.TypeProduce)}, make([]byte, 99)...)
		errc := make(chan error, 1)
		go func() {
			_, err := a.readAck()
			errc <- err
		}()
		var err error
	trickle:
		for _, b := range frame {
			select {
			case err = <-errc:
				break trickle
			case <-time.After(50 * time.Millisecond): // one byte per 50ms: well within idle, never a whole frame in time
			}
			a.c.NetConn().Write([]byte{b})
		}
		if err == nil {
			err = <-errc
		}
		if !isRemote(err, wire.CodeTimeout) || !strings.Contains(err.Error(), "frame not complete") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("heartbeats keep it open", func(t *testing.T) {
		a := dialAgent(t, ts.Addr(), "beat-01")
		for i := range 8 { // 8 × idle/3 = well past the idle timeout
			time.Sleep(idle / 3) // a client's heartbeat interval, not synchronisation
			a.c.WriteFrame(wire.TypeHeartbeat, (&wire.Heartbeat{Nonce: uint64(i)}).Encode(nil))
			a.c.Flush()
			typ, p, err := a.c.ReadFrame()
			var hb wire.Heartbeat
			if err != nil || typ != wire.TypeHeartbeat || hb.Decode(p) != nil || hb.Nonce != uint64(i) {
				t.Fatalf("heartbeat %d: %s %v", i, typ, err)
			}
		}
		expect(t, a.produce(mkBatch(t, src{"beat-01", "app", 1}, 0, 10)), wire.AckAppended, 10)
	})
	st := ts.Stats()
	// Silent before and after the hello: both idle.
	if st.Rejected["handshake"] != 0 || st.Rejected["idle"] != 2 || st.Rejected["slow"] != 1 || st.Heartbeats != 8 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHostileNames: topic and sink names that are paths never reach the
// file system: nothing is created outside the data dir, and the requests
// are answered as unknown or invalid.
func TestHostileNames(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	ts := start(t, dir, nil)
	cc := dialConsumer(t, ts.Addr())
	for _, name := range []string{"../../escape", "..", "/etc/passwd", "a/b", ""} {
		if r := cc.fetch(name, 0, 0, 1024, 0); r.Status != wire.FetchUnknownPartition {
			t.Fatalf("fetch %q: %s", name, r.Status)
		}
		if parts := cc.metadata(name); len(parts) != 0 {
			t.Fatalf("metadata %q: %v", name, parts)
		}
		if r := cc.commit(name, "app", 0, 1); r.Status != wire.CommitInvalid {
			t.Fatalf("commit as sink %q: %+v", name, r)
		}
		if r := cc.commit("s", name, 0, 1); r.Status != wire.CommitInvalid {
			t.Fatalf("commit of topic %q: %+v", name, r)
		}
		if offs := cc.offsets(name, name); len(offs) != 0 {
			t.Fatalf("offsets %q: %v", name, offs)
		}
	}
	a := dialAgent(t, ts.Addr(), "web-01")
	a.send(mkBatch(t, src{"web-01", "../../escape", 1}, 0, 10))
	if _, err := a.readAck(); !isRemote(err, wire.CodeBadRequest) {
		t.Fatalf("bad topic: %v", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 || entries[0].Name() != "data" {
		t.Fatalf("outside the data dir: %v %v", entries, err)
	}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if strings.Contains(path, "escape") || strings.Contains(path, "passwd") {
			t.Errorf("created %s", path)
		}
		return nil
	})
}

// tlsSetup makes a CA and certificates for a server on 127.0.0.1 and a
// client, and a second CA that nobody trusts.
type tlsSetup struct {
	ca, rogue        *wiretest.CA
	server, client   wire.TLSFiles
	expired, stray   wire.TLSFiles // an expired client cert of ca; a client cert of rogue
	expiredServerCfg *tls.Config
}

func newTLSSetup(t *testing.T) *tlsSetup {
	dir := t.TempDir()
	s := &tlsSetup{ca: wiretest.NewCA(t, dir, "ca"), rogue: wiretest.NewCA(t, dir, "rogue")}
	s.server = s.ca.Issue(t, wiretest.Leaf{Name: "agg", Hosts: []string{"127.0.0.1", "localhost"}})
	s.client = s.ca.Issue(t, wiretest.Leaf{Name: "web-01"})
	s.expired = s.ca.Issue(t, wiretest.Leaf{Name: "old-client", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	s.stray = s.rogue.Issue(t, wiretest.Leaf{Name: "intruder"})
	old := s.ca.Issue(t, wiretest.Leaf{Name: "old-agg", Hosts: []string{"127.0.0.1"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	cert, err := tls.LoadX509KeyPair(old.Cert, old.Key) // bypasses ServerTLSConfig's own expiry check
	if err != nil {
		t.Fatal(err)
	}
	s.expiredServerCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	return s
}

func clientTLS(t *testing.T, f wire.TLSFiles) *tls.Config {
	t.Helper()
	cfg, err := wire.ClientTLSConfig(f, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestTLS runs agents and consumers over TLS and mutual TLS, and checks
// that each wrong certificate, and each side without TLS, is refused
// with a message that says what is wrong, on the client and in the
// aggregator's log.
func TestTLS(t *testing.T) {
	s := newTLSSetup(t)
	hello := wire.Hello{Role: wire.RoleAgent, ID: "web-01"}
	dial := func(addr string, cfg *tls.Config) (*wire.Conn, error) {
		c, _, err := wire.Dialer{TLS: cfg, Timeout: 5 * time.Second}.Dial(context.Background(), addr, hello)
		if err == nil {
			t.Cleanup(func() { c.NetConn().Close() })
		}
		return c, err
	}
	roundTrip := func(t *testing.T, c *wire.Conn) {
		t.Helper()
		a := &agentClient{t: t, c: c}
		expect(t, a.produce(mkBatch(t, src{"web-01", "app", 1}, 0, 10)), wire.AckAppended, 10)
	}

	t.Run("tls", func(t *testing.T) {
		cfg, err := wire.ServerTLSConfig(wire.TLSFiles{Cert: s.server.Cert, Key: s.server.Key}, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := start(t, t.TempDir(), func(o *Options) { o.TLS = cfg })
		c, err := dial(ts.Addr(), clientTLS(t, wire.TLSFiles{CA: s.ca.File}))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.NetConn().(*tls.Conn); !ok {
			t.Fatal("not a TLS connection")
		}
		roundTrip(t, c)
		for _, tc := range []struct {
			name       string
			cfg        *tls.Config
			client     string // in the client's error
			serverLogs string // in the aggregator's WARN line
		}{
			{"plain client", nil, "this aggregator requires TLS", "a logship client without TLS"},
			{"untrusted server", clientTLS(t, wire.TLSFiles{CA: s.rogue.File}), "the aggregator's certificate (CN=agg) is not signed by a trusted CA", "tls handshake failed"},
			{"wrong name", clientTLS(t, wire.TLSFiles{CA: s.ca.File, ServerName: "agg.example.com"}), `does not name "agg.example.com"`, "tls handshake failed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := len(ts.logs.lines("level=WARN", tc.serverLogs))
				_, err := dial(ts.Addr(), tc.cfg)
				if err == nil || !strings.Contains(err.Error(), tc.client) {
					t.Fatalf("got %v, want %q", err, tc.client)
				}
				waitUntil(t, func() bool { return len(ts.logs.lines("level=WARN", tc.serverLogs)) > before })
			})
		}
		if n := ts.Stats().Rejected["tls"]; n != 3 {
			t.Fatalf("rejected tls %d", n)
		}
	})

	t.Run("tls client, plain server", func(t *testing.T) {
		ts := start(t, t.TempDir(), nil)
		_, err := dial(ts.Addr(), clientTLS(t, wire.TLSFiles{CA: s.ca.File}))
		if err == nil || !strings.Contains(err.Error(), "tls handshake with") {
			t.Fatalf("got %v", err)
		}
		waitUntil(t, func() bool { return len(ts.logs.lines("level=WARN", "a TLS client on a plain listener")) == 1 })
	})

	t.Run("expired server certificate", func(t *testing.T) {
		ts := start(t, t.TempDir(), func(o *Options) { o.TLS = s.expiredServerCfg })
		_, err := dial(ts.Addr(), clientTLS(t, wire.TLSFiles{CA: s.ca.File}))
		if err == nil || !strings.Contains(err.Error(), "the aggregator's certificate (CN=old-agg) is expired or not valid yet") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("mtls", func(t *testing.T) {
		cfg, err := wire.ServerTLSConfig(wire.TLSFiles{Cert: s.server.Cert, Key: s.server.Key, CA: s.ca.File}, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := start(t, t.TempDir(), func(o *Options) { o.TLS = cfg })
		c, err := dial(ts.Addr(), clientTLS(t, s.client))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
		cc, _, err := wire.Dialer{TLS: clientTLS(t, s.client), Timeout: 5 * time.Second}.Dial(context.Background(), ts.Addr(), wire.Hello{Role: wire.RoleConsumer})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.NetConn().Close()
		if parts := (&consumerClient{t: t, c: cc}).readTopic("app"); len(parts) != 1 {
			t.Fatalf("read over mTLS: %v", parts)
		}
		expiredCfg := clientTLS(t, wire.TLSFiles{CA: s.ca.File})
		old, err := tls.LoadX509KeyPair(s.expired.Cert, s.expired.Key)
		if err != nil {
			t.Fatal(err)
		}
		expiredCfg.Certificates = []tls.Certificate{old}
		strayCfg := clientTLS(t, wire.TLSFiles{CA: s.ca.File})
		stray, err := tls.LoadX509KeyPair(s.stray.Cert, s.stray.Key)
		if err != nil {
			t.Fatal(err)
		}
		// Go's client leaves out a certificate whose issuer the server
		// did not name as acceptable; a hostile client sends it anyway.
		strayCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stray, nil }
		for _, tc := range []struct {
			name       string
			cfg        *tls.Config
			serverLogs string
		}{
			{"no client certificate", clientTLS(t, wire.TLSFiles{CA: s.ca.File}), "client didn't provide a certificate"},
			{"expired client certificate", expiredCfg, "the client's certificate (CN=old-client) is expired or not valid yet"},
			{"unknown CA", strayCfg, "the client's certificate (CN=intruder) is not signed by a trusted CA"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := dial(ts.Addr(), tc.cfg)
				if err == nil || !strings.Contains(err.Error(), "the peer refused the TLS handshake") {
					t.Fatalf("got %v", err)
				}
				if !waitFor(func() bool { return len(ts.logs.lines("level=WARN", "tls handshake failed", tc.serverLogs)) == 1 }) {
					t.Fatalf("no log line with %q:\n%s", tc.serverLogs, ts.logs)
				}
			})
		}
		if n := ts.Stats().Rejected["tls"]; n != 3 {
			t.Fatalf("rejected tls %d", n)
		}
	})

	t.Run("mtls and a token", func(t *testing.T) {
		cfg, err := wire.ServerTLSConfig(wire.TLSFiles{Cert: s.server.Cert, Key: s.server.Key, CA: s.ca.File}, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := start(t, t.TempDir(), func(o *Options) { o.TLS = cfg; withTokens(o) })
		if _, err := dial(ts.Addr(), clientTLS(t, s.client)); !isRemote(err, wire.CodeAuth) {
			t.Fatalf("a good certificate without a token: %v", err)
		}
		c, _, err := wire.Dialer{TLS: clientTLS(t, s.client), Timeout: 5 * time.Second}.Dial(context.Background(), ts.Addr(),
			wire.Hello{Role: wire.RoleAgent, ID: "web-01", Token: web01Secret})
		if err != nil {
			t.Fatal(err)
		}
		defer c.NetConn().Close()
		roundTrip(t, c)
	})
}

// TestStatsAndPartitionEnds: the counters the metrics endpoint exports
// move with the traffic.
func TestStatsAndPartitionEnds(t *testing.T) {
	ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 1 })
	a := dialAgent(t, ts.Addr(), "web-01")
	for i := range int64(5) {
		a.produce(mkBatch(t, src{"web-01", "app", 1}, i*10, i*10+10, "a", "b"))
	}
	st := ts.Stats()
	if st.OpenAgents != 1 || st.BatchesIn != 5 || st.WireBytesIn < st.BytesIn || st.WireBytesOut == 0 ||
		st.AppendLatency.Count != 5 || st.DurableLatency.Count != 5 {
		t.Fatalf("stats %+v", st)
	}
	if h := st.AppendLatency; h.Counts[len(h.Counts)-1] > h.Count || h.Sum <= 0 {
		t.Fatalf("histogram %+v", h)
	}
	ends := ts.PartitionEnds()
	if len(ends) != 1 || ends[0] != (PartitionEnd{Topic: "app", Partition: 0, Start: 0, End: 10}) {
		t.Fatalf("ends %+v", ends)
	}
	a.close()
	waitUntil(t, func() bool { return ts.Stats().OpenAgents == 0 })
}

// waitFor is waitUntil that reports instead of failing.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
