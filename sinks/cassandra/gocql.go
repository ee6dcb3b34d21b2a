package cassandra

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/gocql/gocql"
)

// Statements, built once per session from the keyspace and table names.
// Those are checked to be lower-case identifiers ([a-z_][a-z0-9_]*, so
// safe to put in CQL) and are quoted in every statement: a name that is a
// keyword (in whichever Cassandra version) is then still a name, and a
// quoted lower-case name is the same as the unquoted one. "partition" and
// "offset" are quoted for the same reason.
const columns = `topic, host, bucket, ts, aggregator, "partition", "offset", source, line, raw`

// quote returns the identifier id (lower-case, checked) quoted for CQL.
func quote(id string) string { return `"` + id + `"` }

func insertCQL(ks, table string) string {
	return fmt.Sprintf(`INSERT INTO %s.%s (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`, quote(ks), quote(table), columns)
}

func probeCQL(ks, table string) string {
	return fmt.Sprintf(`SELECT %s FROM %s.%s WHERE topic = ? AND host = ? AND bucket = ? LIMIT 1`, columns, quote(ks), quote(table))
}

// KeyspaceCQL is the statement create_schema runs for the keyspace.
func KeyspaceCQL(ks string, replication map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': '%s'", quote(ks), replication["class"])
	for _, k := range slices.Sorted(maps.Keys(replication)) {
		if k != "class" {
			fmt.Fprintf(&b, ", '%s': '%s'", k, replication[k])
		}
	}
	b.WriteString("}")
	return b.String()
}

// TableCQL is the statement create_schema runs for the table: the schema
// of doc.go.
func TableCQL(ks, table string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (
    topic text,
    host text,
    bucket timestamp,
    ts timestamp,
    aggregator text,
    "partition" int,
    "offset" bigint,
    source text,
    line text,
    raw blob,
    PRIMARY KEY ((topic, host, bucket), ts, aggregator, "partition", "offset")
) WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': '1'}`, quote(ks), quote(table))
}

// gocqlSession is the Session over a real cluster.
type gocqlSession struct {
	s      *gocql.Session
	cons   gocql.Consistency
	ttl    int // seconds, 0 for none
	insert string
	probe  string
}

// cluster returns the driver's config for o, with keyspace ks ("" for a
// session that creates the schema), dialing with d.
func cluster(o *Options, ks string, d *connectDialer) (*gocql.ClusterConfig, error) {
	c := gocql.NewCluster(o.Hosts...)
	c.Keyspace = ks
	c.Timeout = o.Timeout
	c.ConnectTimeout = o.Timeout
	c.Dialer = d       // TLS (SslOpts) still wraps what it dials
	c.ProtoVersion = 4 // the unset values of the raw column need v4
	// Token-aware: each batch goes to a replica of its partition key,
	// which coordinates it without another hop. The fallback picks the
	// order of the others: local DC first when local_dc is set.
	fallback := gocql.RoundRobinHostPolicy()
	if o.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(o.LocalDC)
	}
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback, gocql.ShuffleReplicas())
	// The sink retries itself (with backoff, counted, cancellable); the
	// driver must not retry behind its back.
	c.RetryPolicy = nil
	cons, err := gocql.ParseConsistencyWrapper(o.Consistency)
	if err != nil {
		return nil, err
	}
	c.Consistency = cons
	if o.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: o.Username, Password: o.Password}
	}
	if o.TLS.enabled() {
		c.SslOpts = &gocql.SslOptions{
			Config:                 &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLS.ServerName},
			CaPath:                 o.TLS.CAFile,
			CertPath:               o.TLS.CertFile,
			KeyPath:                o.TLS.KeyFile,
			EnableHostVerification: true,
		}
	}
	c.Logger = slogStd{o.Logger}
	return c, nil
}

// NewGocqlSession connects to the cluster of o. With o.CreateSchema it
// first creates the keyspace and the table when they are missing. It then
// checks that the table has the columns the sink writes. It returns soon
// after ctx ends (connectDialer), although gocql's CreateSession takes no
// context.
func NewGocqlSession(ctx context.Context, o Options) (Session, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &connectDialer{ctx: ctx, d: net.Dialer{Timeout: o.Timeout}}
	stop := context.AfterFunc(ctx, d.closeAll)
	defer func() {
		stop()
		d.connected()
	}()
	if o.CreateSchema {
		if err := createSchema(ctx, &o, d); err != nil {
			return nil, fmt.Errorf("cassandra: create schema: %w", err)
		}
	}
	c, err := cluster(&o, o.Keyspace, d)
	if err != nil {
		return nil, err
	}
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra: connect to %v: %w", o.Hosts, err)
	}
	g := &gocqlSession{
		s: s, cons: c.Consistency, ttl: int(o.TTL.Seconds()),
		insert: insertCQL(o.Keyspace, o.Table), probe: probeCQL(o.Keyspace, o.Table),
	}
	if err := g.Probe(ctx, Key{Topic: "_probe", Host: "_probe"}); err != nil {
		s.Close()
		return nil, fmt.Errorf("cassandra: table %s.%s cannot be read with the columns the sink writes (%s): %w", o.Keyspace, o.Table, columns, err)
	}
	return g, nil
}

func createSchema(ctx context.Context, o *Options, d *connectDialer) error {
	c, err := cluster(o, "", d)
	if err != nil {
		return err
	}
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	for _, stmt := range []string{KeyspaceCQL(o.Keyspace, o.Replication), TableCQL(o.Keyspace, o.Table)} {
		if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return s.AwaitSchemaAgreement(ctx)
}

func (g *gocqlSession) WriteBatch(ctx context.Context, rows []Row) error {
	b := g.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	b.SetConsistency(g.cons)
	b.Entries = make([]gocql.BatchEntry, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		var raw any = gocql.UnsetValue // no tombstone for the usual valid line
		if r.Raw != nil {
			raw = r.Raw
		}
		b.Query(g.insert, r.Topic, r.Host, r.Bucket, r.TS, r.Aggregator, r.Partition, r.Offset, r.Source, r.Line, raw, g.ttl)
	}
	return g.s.ExecuteBatch(b)
}

func (g *gocqlSession) Probe(ctx context.Context, k Key) error {
	return g.s.Query(g.probe, k.Topic, k.Host, k.Bucket).WithContext(ctx).Consistency(gocql.One).Iter().Close()
}

func (g *gocqlSession) Close() { g.s.Close() }

// connectDialer dials the connections of a session. gocql's CreateSession
// takes no context: against a node that accepts connections and never
// answers (hung, or behind a firewall that drops its replies) it waits out
// its connect timeout on every host, and Sink.Close would wait with it. So
// the dialer keeps the connections it dialed while connecting, and
// closeAll (run when ctx ends) closes them: the reads under way fail and
// CreateSession returns. Once connected, the session's Close owns them
// (they are forgotten); later dials still end with ctx. Its methods are
// safe for concurrent use: gocql dials from several goroutines.
type connectDialer struct {
	ctx context.Context // the sink's: ends at Sink.Close
	d   net.Dialer

	mu    sync.Mutex
	conns []net.Conn // dialed while connecting
	done  bool       // connected (or failed): conns are no longer kept
}

func (d *connectDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return c, nil
	}
	if err := d.ctx.Err(); err != nil {
		c.Close() // closeAll ran already
		return nil, err
	}
	d.conns = append(d.conns, c)
	return c, nil
}

// closeAll closes the connections dialed while connecting.
func (d *connectDialer) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close() // a second Close of a conn gocql closed is harmless
	}
	d.conns = nil
}

// connected stops keeping connections: the session (or nothing) owns them.
func (d *connectDialer) connected() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	d.conns = nil
}

// slogStd routes the driver's log lines to the sink's logger.
type slogStd struct{ log *slog.Logger }

func (l slogStd) Print(v ...any)                 { l.log.Info("gocql: " + fmt.Sprint(v...)) }
func (l slogStd) Printf(format string, v ...any) { l.log.Info("gocql: " + fmt.Sprintf(format, v...)) }
func (l slogStd) Println(v ...any)               { l.log.Info("gocql: " + fmt.Sprintln(v...)) }
