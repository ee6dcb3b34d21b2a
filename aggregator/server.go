package aggregator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// Defaults and fixed bounds of the server.
const (
	// DefaultPartitions is the number of partitions per topic when
	// Options.Partitions is zero.
	DefaultPartitions = 4
	// HandshakeTimeout bounds the preamble, Hello and Welcome.
	HandshakeTimeout = 10 * time.Second
	// WriteTimeout bounds every write to a peer: a client that stops
	// reading cannot hold a goroutine (or a shutdown) forever.
	WriteTimeout = 30 * time.Second
	// ShutdownWriteGrace bounds writes once shutdown has begun, so that a
	// peer that stopped reading holds up shutdown only that long.
	ShutdownWriteGrace = 5 * time.Second
	// MaxFetchWait caps a Fetch's long poll.
	MaxFetchWait = 30 * time.Second
	// ackQueue bounds the acks a connection's reader may hand its writer
	// before it blocks: the pipeline depth between append and fsync. The
	// agent's window of unacknowledged bytes bounds it too. Its buffer is
	// allocated per connection: 256 acks are about 40 KiB.
	ackQueue = 256
	// failedDrain bounds how long a connection whose append failed waits
	// for the agent to close it.
	failedDrain = 5 * time.Second
	// DefaultIdleTimeout is how long a connection may send nothing at all
	// (agents send heartbeats every 10s when idle).
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultReadTimeout is how long a frame may take to arrive once its
	// first byte did: 64 MiB (the largest max frame) at 2 MiB/s.
	DefaultReadTimeout = 30 * time.Second
)

// Options configure a Server. See the package documentation.
type Options struct {
	ID            string               // aggregator id, sent in Welcome and MetadataResult; required
	Listen        string               // host:port; "127.0.0.1:0" in tests
	DataDir       string               // logstore under DataDir/log, committed sink offsets under DataDir/offsets
	Partitions    int                  // per topic, default 4
	Fsync         logstore.FsyncPolicy // when an append counts as durable
	FsyncInterval time.Duration        // for logstore.FsyncInterval
	SegmentBytes  int64                // 0: logstore's default
	MaxFrameBytes int                  // largest frame read; default wire.DefaultMaxFrame
	Logger        *slog.Logger         // nil: discard

	// The log's segments and retention; zero takes logstore's default
	// (see logstore.Options).
	SegmentMaxAge   time.Duration // roll a segment this long after its first batch
	RetentionAge    time.Duration // delete segments last appended to this long ago
	RetentionBytes  int64         // per partition; 0: no limit
	MaxOpenSegments int           // sealed segment files open at once

	// Transport security and limits (see the package documentation,
	// "Handshake").
	TLS         *tls.Config   // nil: plain TCP; see wire.ServerTLSConfig (a CA there turns on mutual TLS)
	Tokens      []Token       // empty: no authentication; else every Hello needs one of them
	IdleTimeout time.Duration // no frame for this long closes a connection; default DefaultIdleTimeout
	ReadTimeout time.Duration // a frame not whole this long after its first byte closes it; default DefaultReadTimeout
}

// Server is a running aggregator: a listener, the log and the agent and
// consumer sessions. New opens it, Run serves until its context is done.
type Server struct {
	opts     Options
	log      *slog.Logger
	maxFrame int
	ln       net.Listener
	store    *logstore.Store
	dedup    *dedup
	offsets  *offsetStore
	tokens   *tokens // nil: no authentication
	agents   *agentRegistry
	stats    stats
	wg       sync.WaitGroup // connection goroutines; Add only from the accept loop
	ran      atomic.Bool
	stopAt   atomic.Int64 // when shutdown began, unix ns; 0 while serving

	// The buffers of the frames that connections not pipelined hold to
	// append together (agentConn.gather), and their bound: a connection
	// gathers a further frame only while the total is under it.
	gathered     atomic.Int64
	gatherBudget int64

	// beforeTakeHook, when set (tests, before Run), is called by a
	// pipelined connection's appender before it waits for a frame, and
	// by a connection that is not pipelined before it reads one, with
	// the connection's agent id.
	beforeTakeHook func(agent string)
}

// New checks opts, opens the log under DataDir/log, rebuilds the dedup
// state from the partitions' source tables, loads the committed sink
// offsets and binds the listener, so that Addr works at once. Run must be
// called to serve and, at its end, to release all of it.
func New(opts Options) (*Server, error) {
	var errs []error
	if err := batch.CheckName("aggregator id", opts.ID); err != nil {
		errs = append(errs, fmt.Errorf("aggregator: %w", err))
	}
	if opts.DataDir == "" {
		errs = append(errs, errors.New("aggregator: DataDir is required"))
	}
	if opts.Partitions < 0 {
		errs = append(errs, fmt.Errorf("aggregator: Partitions %d is negative", opts.Partitions))
	}
	if opts.MaxFrameBytes < 0 || (opts.MaxFrameBytes > 0 && opts.MaxFrameBytes < wire.MaxControlFrame) {
		errs = append(errs, fmt.Errorf("aggregator: MaxFrameBytes %d below %d", opts.MaxFrameBytes, wire.MaxControlFrame))
	}
	if opts.IdleTimeout < 0 || opts.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("aggregator: negative IdleTimeout %s or ReadTimeout %s", opts.IdleTimeout, opts.ReadTimeout))
	}
	if opts.TLS != nil && len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("aggregator: TLS config without a certificate"))
	}
	toks, err := newTokens(opts.Tokens)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Partitions == 0 {
		opts.Partitions = DefaultPartitions
	}
	if opts.MaxFrameBytes == 0 {
		opts.MaxFrameBytes = wire.DefaultMaxFrame
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, maxFrame: opts.MaxFrameBytes, agents: newAgentRegistry(), tokens: toks,
		gatherBudget: int64(runtime.GOMAXPROCS(0)) * readAheadBytes}
	if toks != nil && opts.TLS == nil {
		log.Warn("tokens are configured without TLS: they cross the network in clear")
	}

	offsets, err := loadOffsets(filepath.Join(opts.DataDir, "offsets"), log)
	if err != nil {
		return nil, err
	}
	s.offsets = offsets
	store, err := logstore.Open(filepath.Join(opts.DataDir, "log"), logstore.Options{
		SegmentBytes:    opts.SegmentBytes,
		Fsync:           opts.Fsync,
		FsyncInterval:   opts.FsyncInterval,
		SegmentMaxAge:   opts.SegmentMaxAge,
		RetentionAge:    opts.RetentionAge,
		RetentionBytes:  opts.RetentionBytes,
		MaxOpenSegments: opts.MaxOpenSegments,
		Logger:          log,
	})
	if err != nil {
		return nil, fmt.Errorf("aggregator: open log: %w", err)
	}
	s.store = store
	start := time.Now()
	d, n := rebuildDedup(store, opts.Partitions, log)
	s.dedup = d
	log.Info("dedup state rebuilt", "sources", n, "took", time.Since(start))
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	s.ln = ln
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting, stops reading from every connection, lets the appends in
// flight finish, waits until they are durable and sends their acks, closes
// the connections and finally the log. It returns nil after a clean
// shutdown. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("aggregator: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.log.Info("aggregator serving", "id", s.opts.ID, "addr", s.Addr())

	acceptDone := make(chan error, 1)
	go func() { acceptDone <- s.acceptLoop(ctx) }()
	var err error
	select {
	case <-ctx.Done():
		s.ln.Close()
		err = <-acceptDone
	case err = <-acceptDone:
		s.ln.Close()
	}
	s.markStopping()
	// Every connection watches ctx: cancelling it makes their readers stop
	// (see serveConn). The accept loop has returned, so wg.Add is over.
	cancel()
	s.wg.Wait()
	if cerr := s.store.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("aggregator: close log: %w", cerr))
	}
	s.log.Info("aggregator stopped", "id", s.opts.ID, "err", err)
	return err
}

// markStopping records when shutdown began, once.
func (s *Server) markStopping() { s.stopAt.CompareAndSwap(0, time.Now().UnixNano()) }

// writeDeadline is the deadline for a write that starts now: WriteTimeout
// away, but no later than ShutdownWriteGrace after shutdown began.
func (s *Server) writeDeadline() time.Time {
	d := time.Now().Add(WriteTimeout)
	if at := s.stopAt.Load(); at != 0 {
		if g := time.Unix(0, at).Add(ShutdownWriteGrace); g.Before(d) {
			return g
		}
	}
	return d
}

// acceptLoop accepts until the listener is closed. It returns nil when ctx
// is done and the error that stopped it otherwise.
func (s *Server) acceptLoop(ctx context.Context) error {
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("aggregator: accept: %w", err)
			}
			// Out of file descriptors and the like: back off and retry,
			// as net/http does, rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, nc)
		}()
	}
}

// serveConn runs one connection from handshake to close. It never returns
// an error: whatever goes wrong is logged and ends this connection only.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	remote := nc.RemoteAddr().String()
	s.stats.connections.Add(1)
	s.stats.open.Add(1)
	defer s.stats.open.Add(-1)

	if s.opts.TLS != nil {
		tc, ok := s.tlsHandshake(ctx, nc, remote)
		if !ok {
			return
		}
		nc = tc
	}
	c := wire.NewConn(nc, s.maxFrame)
	// At shutdown every reader is interrupted (a read deadline in the past
	// that later deadlines cannot undo) and writes in progress get
	// ShutdownWriteGrace.
	stop := context.AfterFunc(ctx, func() {
		s.markStopping()
		c.Interrupt()
		nc.SetWriteDeadline(s.writeDeadline())
	})
	defer stop()

	hello, err := c.ServerHandshake(s.handshakeTimeout())
	if err != nil {
		if ctx.Err() == nil {
			switch {
			case errors.Is(err, wire.ErrIdle): // connected, and sent nothing
				s.stats.reject(rejectIdle)
			case errors.Is(err, wire.ErrSlowFrame): // began, and did not finish in time
				s.stats.reject(rejectSlow)
			default:
				s.stats.reject(rejectHandshake)
			}
			s.log.Warn("handshake failed", "remote", remote, "err", err)
		}
		nc.Close()
		return
	}
	refuse := func(reason rejectReason, code wire.ErrorCode, msg string) {
		s.stats.reject(reason)
		s.log.Warn("connection refused", "remote", remote, "role", hello.Role.String(), "id", hello.ID, "err", msg)
		nc.SetWriteDeadline(s.writeDeadline())
		if c.WriteError(code, msg) == nil {
			closeAfterError(c)
		}
		nc.Close()
	}
	if ctx.Err() != nil {
		nc.SetWriteDeadline(s.writeDeadline())
		c.WriteError(wire.CodeUnavailable, msgShuttingDown)
		nc.Close()
		return
	}
	switch hello.Role {
	case wire.RoleAgent:
		if err := batch.CheckName("agent id", hello.ID); err != nil {
			refuse(rejectHello, wire.CodeBadRequest, err.Error())
			return
		}
	case wire.RoleConsumer:
		if hello.ID != "" && !batch.ValidName(hello.ID) {
			refuse(rejectHello, wire.CodeBadRequest, batch.CheckName("sink name", hello.ID).Error())
			return
		}
	default:
		refuse(rejectHello, wire.CodeAuth, fmt.Sprintf("unknown role %s", hello.Role))
		return
	}
	g, err := s.tokens.check(hello)
	if err != nil {
		refuse(rejectAuth, wire.CodeAuth, err.Error())
		return
	}
	nc.SetWriteDeadline(s.writeDeadline())
	if err := c.Accept(wire.Welcome{Version: hello.Version, Aggregator: s.opts.ID, MaxFrame: uint32(s.maxFrame)}); err != nil {
		s.log.Warn("handshake failed", "remote", remote, "err", err)
		nc.Close()
		return
	}
	log := s.log.With("remote", remote, "role", hello.Role.String(), "id", hello.ID)
	if g.token != "" {
		log = log.With("token", g.token)
	}
	log.Debug("connection accepted", "version", hello.Version)
	c.SetReadTimeouts(s.opts.IdleTimeout, s.opts.ReadTimeout)
	// Only an agent's Produce carries a batch: every other frame of either
	// role is refused above MaxControlFrame, from its header, before a
	// buffer is taken for it.
	switch hello.Role {
	case wire.RoleAgent:
		c.SetBulkType(wire.TypeProduce)
	case wire.RoleConsumer:
		c.SetMaxFrame(wire.MaxControlFrame)
	}
	switch hello.Role {
	case wire.RoleAgent:
		s.stats.openAgents.Add(1)
		s.serveAgent(ctx, c, hello.ID, log)
		s.stats.openAgents.Add(-1)
	case wire.RoleConsumer:
		s.serveConsumer(ctx, c, g, log)
	}
}

// handshakeTimeout bounds each of the TLS and the protocol handshakes:
// HandshakeTimeout, or the idle timeout when that is shorter, so that a
// client that connects and sends nothing is cut like an idle one.
func (s *Server) handshakeTimeout() time.Duration { return min(HandshakeTimeout, s.opts.IdleTimeout) }

// tlsHandshake runs the server side of a TLS handshake on nc, bounded by
// HandshakeTimeout and ended by ctx. On failure it logs why, in the
// operator's terms, counts it, and closes nc.
func (s *Server) tlsHandshake(ctx context.Context, nc net.Conn, remote string) (net.Conn, bool) {
	tc := tls.Server(nc, s.opts.TLS)
	hctx, cancel := context.WithTimeout(ctx, s.handshakeTimeout())
	err := tc.HandshakeContext(hctx)
	cancel()
	if err == nil {
		return tc, true
	}
	if ctx.Err() == nil {
		s.stats.reject(rejectTLS)
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && string(rh.RecordHeader[:4]) == wire.Magic {
			// A logship client without TLS: it can read a plain Error.
			rh.Conn.SetWriteDeadline(s.writeDeadline())
			wire.NewConn(rh.Conn, 0).WriteError(wire.CodeProtocol, "this aggregator requires TLS: set tls in the client's config")
			err = fmt.Errorf("a logship client without TLS on the TLS listener: %w", err)
		}
		s.log.Warn("tls handshake failed", "remote", remote, "err", wire.DescribeTLSError(err, true))
	}
	nc.Close()
	return nil, false
}
