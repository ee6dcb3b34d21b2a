package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
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
	// agent's window of unacknowledged bytes bounds it too.
	ackQueue = 1024
	// failedDrain bounds how long a connection whose append failed waits
	// for the agent to close it.
	failedDrain = 5 * time.Second
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
	agents   *agentRegistry
	stats    stats
	wg       sync.WaitGroup // connection goroutines; Add only from the accept loop
	ran      atomic.Bool
	stopAt   atomic.Int64 // when shutdown began, unix ns; 0 while serving
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
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Partitions == 0 {
		opts.Partitions = DefaultPartitions
	}
	if opts.MaxFrameBytes == 0 {
		opts.MaxFrameBytes = wire.DefaultMaxFrame
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, maxFrame: opts.MaxFrameBytes, agents: newAgentRegistry()}

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

// longAgo is a deadline in the past: setting it makes blocked reads return.
var longAgo = time.Unix(1, 0)

// serveConn runs one connection from handshake to close. It never returns
// an error: whatever goes wrong is logged and ends this connection only.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	remote := nc.RemoteAddr().String()
	s.stats.connections.Add(1)
	s.stats.open.Add(1)
	defer s.stats.open.Add(-1)

	// At shutdown every reader is woken by a read deadline in the past.
	// The handshake resets the read deadline when it ends, so a shutdown
	// that lands during it is caught by the ctx.Err check after it; one that
	// lands later sets a deadline nobody resets. Writes in progress get
	// ShutdownWriteGrace.
	stop := context.AfterFunc(ctx, func() {
		s.markStopping()
		nc.SetReadDeadline(longAgo)
		nc.SetWriteDeadline(s.writeDeadline())
	})
	defer stop()

	c := wire.NewConn(nc, s.maxFrame)
	hello, err := c.ServerHandshake(HandshakeTimeout)
	if err != nil {
		if ctx.Err() == nil {
			s.stats.reject(rejectHandshake)
			s.log.Warn("handshake failed", "remote", remote, "err", err)
		}
		nc.Close()
		return
	}
	refuse := func(reason rejectReason, code wire.ErrorCode, msg string) {
		s.stats.reject(reason)
		s.log.Warn("connection refused", "remote", remote, "err", msg)
		nc.SetWriteDeadline(s.writeDeadline())
		c.WriteError(code, msg)
		nc.Close()
	}
	if ctx.Err() != nil {
		nc.SetWriteDeadline(s.writeDeadline())
		c.WriteError(wire.CodeUnavailable, "aggregator shutting down")
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
	nc.SetWriteDeadline(s.writeDeadline())
	if err := c.Accept(wire.Welcome{Version: hello.Version, Aggregator: s.opts.ID, MaxFrame: uint32(s.maxFrame)}); err != nil {
		s.log.Warn("handshake failed", "remote", remote, "err", err)
		nc.Close()
		return
	}
	log := s.log.With("remote", remote, "role", hello.Role.String(), "id", hello.ID)
	log.Debug("connection accepted")
	switch hello.Role {
	case wire.RoleAgent:
		s.serveAgent(ctx, c, hello.ID, log)
	case wire.RoleConsumer:
		s.serveConsumer(ctx, c, log)
	}
}
