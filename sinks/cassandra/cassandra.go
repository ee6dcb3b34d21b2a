package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"

	"logship/logstore/batch"
	"logship/sinks"
)

// Defaults for Options.
const (
	DefaultConsistency    = "LOCAL_QUORUM"
	DefaultTable          = "logs"
	DefaultBucket         = time.Hour
	DefaultConcurrency    = 32
	DefaultBatchMaxBytes  = 64 << 10
	DefaultMaxRecordBytes = 8 << 20
	DefaultTimeout        = 10 * time.Second
	DefaultRetryMin       = 100 * time.Millisecond
	DefaultRetryMax       = 30 * time.Second
)

// Limits.
const (
	// MaxTTL is Cassandra's own limit on a TTL: 20 years.
	MaxTTL = 630720000 * time.Second
	// MaxBatchBytes bounds BatchMaxBytes and MaxRecordBytes: Cassandra
	// refuses a mutation (a single-partition batch is one) above
	// max_mutation_size, half of commitlog_segment_size: 16 MiB by
	// default. 1 MiB is left for what rowSize does not count.
	MaxBatchBytes = 15 << 20
	// ttlMargin: a TTL must end this long before MaxExpiry, so that a
	// sink started now may run that long and still write.
	ttlMargin = 30 * 24 * time.Hour
	// maxBatchRows keeps a batch under the protocol's 65,535 statements
	// whatever batch_max_bytes says.
	maxBatchRows = 10000
	// rowOverhead estimates what a row costs in a batch beyond its text
	// columns: the fixed-size columns, the TTL, each value's length.
	rowOverhead = 80
	// openFactor bounds the bytes a writer keeps in batches it has not
	// sent yet, as a multiple of BatchMaxBytes: past it, it sends them all.
	openFactor = 8
)

// Options configure a Sink; doc.go names the config key of each.
type Options struct {
	// Name is the sink's name: it names the dead-letter file. Required.
	Name string
	// Hosts are the contact points, host or host:port (port 9042).
	Hosts []string
	// Keyspace and Table name the table of doc.go (lower-case CQL
	// identifiers, not reserved keywords; quoted in every statement).
	// Keyspace is required; Table defaults to "logs".
	Keyspace string
	Table    string
	// Consistency of the writes; default LOCAL_QUORUM.
	Consistency string
	// TTL of every row written; 0 means none. Whole seconds, ending
	// before MaxExpiryUnix (checkTTL).
	TTL time.Duration
	// CreateSchema creates the keyspace, with Replication (which must
	// then hold "class"), and the table when they are missing.
	CreateSchema bool
	Replication  map[string]string
	// Username and Password authenticate with Cassandra's
	// PasswordAuthenticator when Username is set.
	Username string
	Password string
	// TLS: used when any of its fields is set.
	TLS TLSOptions
	// LocalDC: when set, the coordinators of the local data center are
	// preferred (token-aware first, DC-aware after that).
	LocalDC string
	// Timeout of each request and of connecting; default 10s.
	Timeout time.Duration
	// Concurrency is how many batches the whole sink writes at once,
	// retries included, and how many one writer may have unfinished
	// (being written or waiting for a retry); default 32.
	Concurrency int
	// BatchMaxBytes bounds a batch's estimated size; default 64 KiB, at
	// most MaxBatchBytes.
	BatchMaxBytes int
	// MaxRecordBytes: a larger record goes to the dead-letter file
	// without being sent; default 8 MiB, at most MaxBatchBytes (Cassandra
	// refuses a mutation above half its commitlog segment, 16 MiB by
	// default).
	MaxRecordBytes int
	// Bucket is the time span of a partition key; default 1h.
	Bucket time.Duration
	// RetryMin and RetryMax bound the exponential backoff between tries
	// of a failed batch; defaults 100ms and 30s.
	RetryMin, RetryMax time.Duration
	// MaxRetries: after that many retries a batch's records go to the
	// dead-letter file. 0 (the default) retries forever.
	MaxRetries int
	// DeadLetterDir holds the dead-letter file. Required.
	DeadLetterDir string
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
	// NewSession opens the session; nil means NewGocqlSession with these
	// options. Tests put a fake here.
	NewSession NewSessionFunc
}

// TLSOptions are PEM files; CAFile verifies the servers (system roots
// when empty), CertFile and KeyFile are the client's certificate.
// ServerName is the name the servers' certificates must carry, when it is
// not the host name used to reach them.
type TLSOptions struct {
	CAFile, CertFile, KeyFile, ServerName string
}

func (t TLSOptions) enabled() bool { return t != TLSOptions{} }

// MaxExpiryUnix (2038-01-19T03:14:07Z) is the last time a row may expire
// on Cassandra 3.x and 4.x: they store it in 32-bit seconds, and by
// default refuse a write whose TTL ends later
// (expiration_date_overflow_policy REJECT, CASSANDRA-14092): every row
// would be dead-lettered. Cassandra 5.0 stores later times
// (CASSANDRA-14227), but the sink checks for the versions before it.
const MaxExpiryUnix = 1<<31 - 1

// checkTTL returns what is wrong with ttl for a sink started at now, or
// nil: whole seconds, at most MaxTTL, and ending ttlMargin before
// MaxExpiry.
func checkTTL(ttl time.Duration, now time.Time) error {
	if ttl < 0 || ttl > MaxTTL || ttl%time.Second != 0 {
		return fmt.Errorf("ttl %s: want whole seconds, at most %s", ttl, MaxTTL)
	}
	limit := time.Unix(MaxExpiryUnix, 0).UTC()
	if last := limit.Add(-ttlMargin); ttl > 0 && now.Add(ttl).After(last) {
		return fmt.Errorf("ttl %s: rows written now would expire after %s; Cassandra 3 and 4 refuse expiry times past %s (want at most %s)",
			ttl, last.Format(time.DateOnly), limit.Format(time.RFC3339), max(last.Sub(now).Truncate(time.Hour), 0))
	}
	return nil
}

// identifier is a CQL name: lower-case, so that quoted ("ks") and unquoted
// it names the same thing. The sink quotes them in every statement anyway
// (gocql.go).
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// reserved reports whether name (lower-case) is a reserved CQL keyword of
// Cassandra 3.x to 5.0 (key and count were reserved in 3.x). The sink
// quotes its names, so they would work, but every query a person writes
// against such a table would need the quotes too: they are refused.
func reserved(name string) bool {
	switch name {
	case "add", "allow", "alter", "and", "apply", "asc", "authorize", "batch", "begin", "by",
		"columnfamily", "count", "create", "default", "delete", "desc", "describe", "drop",
		"entries", "execute", "for", "from", "full", "grant", "if", "in", "index", "infinity",
		"insert", "into", "is", "key", "keyspace", "limit", "materialized", "mbean", "mbeans",
		"modify", "nan", "norecursive", "not", "null", "of", "on", "or", "order", "primary",
		"rename", "replace", "restrict", "revoke", "schema", "select", "set", "table", "to",
		"token", "truncate", "unlogged", "unrestrict", "unset", "update", "use", "using", "view",
		"where", "with":
		return true
	}
	return false
}

// checkIdentifier returns what is wrong with name as a keyspace or table
// name, or "".
func checkIdentifier(name string) string {
	switch {
	case !identifier.MatchString(name):
		return "want a lower-case CQL identifier, [a-z_][a-z0-9_]{0,47}"
	case reserved(name):
		return "a reserved CQL keyword: every query would have to quote it"
	}
	return ""
}

// replicationWord is a key or a value of the replication map.
var replicationWord = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// withDefaults checks o and fills in defaults. The error lists every problem.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := batch.CheckName("sink name", o.Name); err != nil {
		errs = append(errs, err)
	}
	if o.NewSession == nil && len(o.Hosts) == 0 {
		bad("no hosts")
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	for _, id := range [][2]string{{"keyspace", o.Keyspace}, {"table", o.Table}} {
		if msg := checkIdentifier(id[1]); msg != "" {
			bad("%s %q: %s", id[0], id[1], msg)
		}
	}
	if o.Consistency == "" {
		o.Consistency = DefaultConsistency
	}
	if _, err := gocql.ParseConsistencyWrapper(o.Consistency); err != nil {
		bad("consistency %q: %v", o.Consistency, err)
	}
	if err := checkTTL(o.TTL, time.Now()); err != nil {
		errs = append(errs, err)
	}
	if o.CreateSchema {
		if o.Replication["class"] == "" {
			bad("create schema needs a replication class")
		}
		for k, v := range o.Replication {
			if !replicationWord.MatchString(k) || !replicationWord.MatchString(v) {
				bad("replication %q = %q: want [A-Za-z0-9_.-]", k, v)
			}
		}
	}
	if o.DeadLetterDir == "" {
		bad("no dead-letter directory")
	}
	if o.Concurrency < 0 || o.BatchMaxBytes < 0 || o.MaxRecordBytes < 0 || o.Bucket < 0 ||
		o.Timeout < 0 || o.RetryMin < 0 || o.RetryMax < 0 || o.MaxRetries < 0 {
		bad("negative setting")
	}
	if o.BatchMaxBytes > MaxBatchBytes || o.MaxRecordBytes > MaxBatchBytes {
		bad("batch max bytes %d, max record bytes %d: want at most %d (Cassandra refuses a mutation above 16 MiB by default)",
			o.BatchMaxBytes, o.MaxRecordBytes, MaxBatchBytes)
	}
	if o.Bucket != 0 && (o.Bucket < time.Second || o.Bucket%time.Millisecond != 0) {
		bad("bucket %s: want at least 1s, whole milliseconds", o.Bucket)
	}
	setDefault(&o.Concurrency, DefaultConcurrency)
	setDefault(&o.BatchMaxBytes, DefaultBatchMaxBytes)
	setDefault(&o.MaxRecordBytes, DefaultMaxRecordBytes)
	setDefault(&o.Bucket, DefaultBucket)
	setDefault(&o.Timeout, DefaultTimeout)
	setDefault(&o.RetryMin, DefaultRetryMin)
	setDefault(&o.RetryMax, max(DefaultRetryMax, o.RetryMin))
	if o.RetryMax < o.RetryMin {
		bad("retry max %s is below retry min %s", o.RetryMax, o.RetryMin)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("cassandra: bad options: %w", errors.Join(errs...))
	}
	return o, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Sink writes records as rows of one Cassandra table. It implements
// sinks.Sink; Open and Stats are safe for concurrent use.
//
// It owns Concurrency goroutines that write batches, fed by the
// partitions' writers and by the retry queue, the timers of that queue,
// and the goroutine of a connection attempt; Close stops them.
type Sink struct {
	opts Options
	log  *slog.Logger
	dl   *deadLetters

	ctx     context.Context // cancelled by Close: stops every retry
	cancel  context.CancelFunc
	work    chan *job   // unbuffered: a send waits for a free goroutine
	retries *retryQueue // batches waiting out a backoff, and those due
	bufs    sync.Pool   // *jobBufs
	wg      sync.WaitGroup

	mu     sync.Mutex // guards sess, conn, closed
	sess   Session
	conn   *connecting // the connection attempt under way, if any
	closed bool

	st counters

	logMu   sync.Mutex
	lastLog [numKinds]time.Time // when a retry of each kind was last logged
}

var _ sinks.Sink = (*Sink)(nil)

// counters are the numbers Stats reports.
type counters struct {
	writes, batches, rows, bytes, retries, deadLetters atomic.Uint64
	inflight                                           atomic.Int64
	errors                                             [numKinds]atomic.Uint64
}

// New checks opts and returns a Sink. It does not connect: the first Open
// does, and a failed connection is retried by the runtime's next Open.
func New(opts Options) (*Sink, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.NewSession == nil {
		o.NewSession = func(ctx context.Context) (Session, error) { return NewGocqlSession(ctx, o) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sink{
		opts: o, log: o.Logger, ctx: ctx, cancel: cancel, work: make(chan *job), retries: newRetryQueue(),
		dl: &deadLetters{dir: o.DeadLetterDir, sink: o.Name},
	}
	for range o.Concurrency {
		s.wg.Go(s.loop)
	}
	return s, nil
}

// session returns the sink's session, connecting when it has none. One
// connection attempt runs at a time, in a goroutine of the sink (s.conn
// names it until it ends); every Open waits for it, or for its own ctx, so
// that a cluster that cannot be reached never holds up a shutdown.
func (s *Sink) session(ctx context.Context) (Session, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	if s.sess != nil {
		defer s.mu.Unlock()
		return s.sess, nil
	}
	c := s.conn
	if c == nil {
		c = &connecting{done: make(chan struct{})}
		s.conn = c
		go s.connect(c) // waited for by Close, through c.done
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.sess, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// connecting is a connection attempt: done is closed when sess or err is
// set, and the goroutine making it ends.
type connecting struct {
	done chan struct{}
	sess Session
	err  error
}

func (s *Sink) connect(c *connecting) {
	sess, err := s.opts.NewSession(s.ctx)
	s.mu.Lock()
	switch {
	case err != nil:
		s.log.Warn("cannot connect to cassandra; retrying at the next open", "hosts", s.opts.Hosts, "err", err)
	case s.closed:
		sess.Close()
		sess, err = nil, errClosed
	default:
		s.sess = sess
		s.log.Info("connected to cassandra", "hosts", s.opts.Hosts, "keyspace", s.opts.Keyspace, "table", s.opts.Table)
	}
	c.sess, c.err = sess, err
	s.conn = nil
	s.mu.Unlock()
	close(c.done)
}

var errClosed = errors.New("cassandra: sink closed")

// Open implements sinks.Sink. Writes are idempotent (doc.go): the sink
// keeps no position of its own, and returns -1 so that the runtime resumes
// at the committed offset, replays included.
func (s *Sink) Open(ctx context.Context, p sinks.Partition) (sinks.PartitionWriter, int64, error) {
	sess, err := s.session(ctx)
	if err != nil {
		return nil, -1, err
	}
	return newWriter(s, sess, p), -1, nil
}

// closeConnectWait bounds the time Close waits for a connection attempt.
const closeConnectWait = time.Second

// Close stops the sink's goroutines (their retries give up) and closes the
// session. Call it after every writer was closed (after sinks.Run returned).
//
// A connection attempt under way ends with the sink's context: the real
// session's dialer closes its connections then (gocql.go), since gocql's
// CreateSession takes no context and would otherwise wait out its whole
// connect timeout. Close waits for the attempt, but at most
// closeConnectWait: what does not stop with the context (a DNS lookup, a
// NewSession that ignores it) is left to end by itself, logged, and then
// closes any session it made (connect sees closed). Tests that use such a
// NewSession wait for it with synctest.Wait.
func (s *Sink) Close() error {
	s.mu.Lock()
	s.closed = true
	sess, c := s.sess, s.conn
	s.sess = nil
	s.mu.Unlock()
	s.cancel()
	for _, j := range s.retries.close() {
		s.finish(j, false)
	}
	s.wg.Wait()
	if sess != nil {
		sess.Close()
	}
	if c != nil {
		t := time.NewTimer(closeConnectWait)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			s.log.Warn("cassandra connection attempt still under way at close; it ends by itself", "hosts", s.opts.Hosts, "waited", closeConnectWait)
		}
	}
	return nil
}

// Stats is a snapshot of a Sink's counters, for metrics.
type Stats struct {
	Writes      uint64            // batch writes attempted, retries included
	Batches     uint64            // batches written
	Rows        uint64            // rows written
	Bytes       uint64            // estimated bytes of the rows written
	Retries     uint64            // tries after a failure (every kind)
	DeadLetters uint64            // records written to the dead-letter file
	InFlight    int64             // batches being written or waiting to be retried now
	Errors      map[string]uint64 // failed tries by kind, each counted once (doc.go)
}

// Stats returns the sink's counters since New.
func (s *Sink) Stats() Stats {
	st := Stats{
		Writes: s.st.writes.Load(), Batches: s.st.batches.Load(), Rows: s.st.rows.Load(),
		Bytes: s.st.bytes.Load(), Retries: s.st.retries.Load(), DeadLetters: s.st.deadLetters.Load(),
		InFlight: s.st.inflight.Load(), Errors: make(map[string]uint64, numKinds),
	}
	for k := range numKinds {
		st.Errors[k.String()] = s.st.errors[k].Load()
	}
	return st
}
