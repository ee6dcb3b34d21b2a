package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"logship/logstore/batch"
)

// Input is one group of files whose lines go to one topic.
type Input struct {
	Topic string
	// Paths are glob patterns (filepath.Match syntax; a path element "**"
	// matches any number of directories).
	Paths []string
	// Exclude drops matched files: a pattern with a path separator is
	// matched against the whole path, one without against the base name.
	Exclude []string
	// StartAt applies to files present at the agent's first scan that have
	// no position yet: "beginning" (default) or "end". Files that appear
	// later are always read from their beginning.
	StartAt string
}

// Options configure an Agent. Zero values take the defaults below.
type Options struct {
	ID          string   // agent id (host), required
	StateDir    string   // positions live here; created if missing
	Aggregators []string // host:port; the first that works is used, then the next on failure
	Compression batch.Compression
	// BatchBytes is the raw bytes per batch (default 256 KiB); less on a
	// connection whose aggregator has a max frame below 2×BatchBytes.
	BatchBytes int
	// BatchWait is how long unsent lines may wait for more (default 200ms).
	BatchWait time.Duration
	// WindowBytes bounds unacknowledged raw bytes on the connection
	// (default 16 MiB); a full window stops reading.
	WindowBytes int
	// ScanInterval is how often the globs are expanded again (default 1s).
	ScanInterval time.Duration
	// PollInterval is how often an idle file is checked for growth
	// (default 250ms).
	PollInterval time.Duration
	// PositionsInterval bounds how often the positions file is written
	// (default 1s; it is also written at shutdown).
	PositionsInterval time.Duration
	Inputs            []Input
	Logger            *slog.Logger // nil: discard
}

// Defaults.
const (
	DefaultBatchBytes        = 256 << 10
	DefaultBatchWait         = 200 * time.Millisecond
	DefaultWindowBytes       = 16 << 20
	DefaultScanInterval      = time.Second
	DefaultPollInterval      = 250 * time.Millisecond
	DefaultPositionsInterval = time.Second
)

// Fixed limits of this version; a later version makes some of them settings.
const (
	// maxBatchBytes bounds BatchBytes, so that a batch plus one maximal line
	// stays far below batch.MaxSize and the aggregator's default max frame.
	maxBatchBytes = 8 << 20
	// maxLineBytes is the longest record: a longer line is cut into records
	// of this size (nothing is dropped), and a warning is logged.
	maxLineBytes = 1 << 20
	// readBufSize is the size of one read.
	readBufSize = 256 << 10
	// fairShare is how many bytes the tailer reads from one file before it
	// turns to the next, so that one busy file cannot starve the others.
	fairShare = 1 << 20
	// maxInFlight bounds the number of unacknowledged batches, whatever
	// their size. Together with the window it bounds the agent's memory.
	maxInFlight = 4096
	// drainTimeout bounds how long a clean stop waits for in-flight acks.
	drainTimeout = 5 * time.Second
	// dialTimeout bounds a connect plus handshake.
	dialTimeout = 5 * time.Second
	// Reconnect backoff: exponential from backoffMin to backoffMax, with
	// jitter; after failoverAfter failures in a row the next aggregator of
	// the list is tried.
	backoffMin    = 100 * time.Millisecond
	backoffMax    = 5 * time.Second
	failoverAfter = 2
	// healthyAfter: a session that lived this long, or got a good ack,
	// resets the backoff.
	healthyAfter = 5 * time.Second
)

// Stats are totals since the agent started. Lines and bytes sent again after
// a reconnect count again.
type Stats struct {
	Lines        int64 // records put in batches
	RawBytes     int64 // file bytes put in batches (newlines included)
	WireBytes    int64 // bytes written to the socket
	Batches      int64 // batches sent
	AckedBatches int64 // batches acknowledged Appended or Duplicate
	AckedBytes   int64 // file bytes of those batches
	OpenFiles    int   // files open now
}

// Agent tails files and ships them to an aggregator. Create it with New,
// run it once with Run. Stats and Idle may be called from any goroutine.
type Agent struct {
	opts    Options
	log     *slog.Logger
	posPath string

	// Everything below, up to the channels, is owned by the loop goroutine
	// (the one that calls Run): sources, in-flight batches, the window.
	restored      *restoredSet // unclaimed entries of the positions file
	sources       map[fileKey]*source
	order         []*source // round-robin order of sources
	rr            int
	flights       flightQueue
	inflightBytes int64
	sess          *session
	seq           uint64
	builder       *batch.Builder
	buf           []byte
	fpBuf         []byte
	posDirty      bool
	scanGen       uint64
	firstScan     bool

	ackCh    chan ackMsg
	sessCh   chan *session
	idleCh   chan chan bool
	started  atomic.Bool
	loopUp   atomic.Bool
	loopDone chan struct{}

	// loopIters counts loop iterations; tests use it to let time pass
	// without sleeping.
	loopIters atomic.Int64

	bufPool sync.Pool

	lines, rawBytes, wireBytes, batches, ackedBatches, ackedBytes, openFiles atomic.Int64
}

// New checks opts, creates the state directory and loads the positions
// file. A corrupt positions file is not an error: it is kept aside as
// positions.broken and the agent starts afresh.
func New(opts Options) (*Agent, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	b, err := batch.NewBuilder(opts.Compression)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		opts:      opts,
		log:       log,
		posPath:   filepath.Join(opts.StateDir, positionsFile),
		sources:   make(map[fileKey]*source),
		builder:   b,
		buf:       make([]byte, readBufSize),
		fpBuf:     make([]byte, fingerprintMax),
		firstScan: true,
		ackCh:     make(chan ackMsg, 64),
		sessCh:    make(chan *session),
		idleCh:    make(chan chan bool),
		loopDone:  make(chan struct{}),
	}
	entries, err := a.loadPositions()
	if err != nil {
		b.Close()
		return nil, err
	}
	a.restored = newRestoredSet(entries)
	return a, nil
}

func (o *Options) validate() error {
	var errs []error
	if err := batch.CheckName("agent id", o.ID); err != nil {
		errs = append(errs, err)
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("state dir is required"))
	}
	if len(o.Aggregators) == 0 {
		errs = append(errs, errors.New("at least one aggregator address is required"))
	}
	if o.Compression > batch.S2 {
		errs = append(errs, fmt.Errorf("unknown compression %s", o.Compression))
	}
	if o.BatchBytes < 0 || o.BatchBytes > maxBatchBytes {
		errs = append(errs, fmt.Errorf("batch bytes %d out of range [1, %d]", o.BatchBytes, maxBatchBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"batch wait", o.BatchWait}, {"scan interval", o.ScanInterval}, {"poll interval", o.PollInterval}, {"positions interval", o.PositionsInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if o.WindowBytes < 0 {
		errs = append(errs, fmt.Errorf("window bytes %d is negative", o.WindowBytes))
	}
	if len(o.Inputs) == 0 {
		errs = append(errs, errors.New("at least one input is required"))
	}
	for i, in := range o.Inputs {
		if err := batch.CheckName(fmt.Sprintf("topic of input %d", i+1), in.Topic); err != nil {
			errs = append(errs, err)
		}
		if len(in.Paths) == 0 {
			errs = append(errs, fmt.Errorf("input %q has no paths", in.Topic))
		}
		for _, p := range append(append([]string(nil), in.Paths...), in.Exclude...) {
			if err := checkPattern(p); err != nil {
				errs = append(errs, fmt.Errorf("input %q: %w", in.Topic, err))
			}
		}
		switch in.StartAt {
		case "", "beginning", "end":
		default:
			errs = append(errs, fmt.Errorf("input %q: start at %q: want beginning or end", in.Topic, in.StartAt))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("agent: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

func (o *Options) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.WindowBytes == 0 {
		o.WindowBytes = DefaultWindowBytes
	}
	def(&o.BatchWait, DefaultBatchWait)
	def(&o.ScanInterval, DefaultScanInterval)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.PositionsInterval, DefaultPositionsInterval)
	o.Inputs = append([]Input(nil), o.Inputs...)
}

// Stats returns totals since start. Safe to call concurrently.
func (a *Agent) Stats() Stats {
	return Stats{
		Lines:        a.lines.Load(),
		RawBytes:     a.rawBytes.Load(),
		WireBytes:    a.wireBytes.Load(),
		Batches:      a.batches.Load(),
		AckedBatches: a.ackedBatches.Load(),
		AckedBytes:   a.ackedBytes.Load(),
		OpenFiles:    int(a.openFiles.Load()),
	}
}

// Idle reports whether every complete line of every known file has been
// read and acknowledged: nothing is in flight, no tracked file has unread
// bytes other than an incomplete last line. Files that the next scan would
// discover are not known yet. It asks the tailer loop, which checks the
// files' sizes afresh; it is false when Run is not running. Safe to call
// concurrently.
func (a *Agent) Idle() bool {
	if !a.loopUp.Load() {
		return false
	}
	r := make(chan bool, 1)
	select {
	case a.idleCh <- r:
		return <-r
	case <-a.loopDone:
		return false
	}
}

// Run tails and ships until ctx is done, then stops cleanly: it stops
// reading, waits up to 5s for the acks of batches in flight, writes the
// positions file and closes everything. It returns nil on a clean stop, and
// an error only when the final positions could not be written. Run may be
// called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.builder.Close()

	connCtx, stopConn := context.WithCancel(context.Background())
	defer stopConn()
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		a.connLoop(connCtx)
	}()

	a.loopUp.Store(true)
	a.loop(ctx)
	close(a.loopDone)
	a.drain()

	// Stop the connection and keep serving the channels it may be
	// blocked on until it is gone.
	stopConn()
	for done := false; !done; {
		select {
		case <-connDone:
			done = true
		case m := <-a.ackCh:
			a.handleAck(m)
		case s := <-a.sessCh:
			s.fail(errStopping)
		}
	}
	if a.sess != nil {
		a.sessionDown(errStopping)
	}
	err := a.savePositions()
	for _, s := range a.order {
		a.closeSource(s)
	}
	a.openFiles.Store(0)
	if err != nil {
		return fmt.Errorf("agent: final positions: %w", err)
	}
	a.log.Info("agent stopped")
	return nil
}

var errStopping = errors.New("agent: stopping")

// loop is the tailer: the one goroutine that owns the sources, the
// in-flight batches and the window. It reads files, builds batches, hands
// them to the connection's writer, applies acks, rescans the globs and
// writes positions, and waits on a timer when there is nothing to do.
func (a *Agent) loop(ctx context.Context) {
	scanT := time.NewTicker(a.opts.ScanInterval)
	defer scanT.Stop()
	posT := time.NewTicker(a.opts.PositionsInterval)
	defer posT.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	ready := make(chan time.Time)
	close(ready)

	a.scan(time.Now())
	for {
		a.loopIters.Add(1)
		now := time.Now()
		busy := a.tailPass(now)
		var wakeC <-chan time.Time = ready
		if !busy {
			wake.Reset(a.nextWake(now))
			wakeC = wake.C
		}
		var sessDone <-chan struct{}
		if a.sess != nil {
			sessDone = a.sess.done
		}
		select {
		case <-ctx.Done():
			return
		case m := <-a.ackCh:
			a.handleAck(m)
		case s := <-a.sessCh:
			a.sessionUp(s)
		case <-sessDone:
			a.sessionLost()
		case <-scanT.C:
			a.scan(time.Now())
		case <-posT.C:
			if a.posDirty {
				a.savePositions()
			}
		case r := <-a.idleCh:
			r <- a.idle()
		case <-wakeC:
		}
	}
}

// drain waits, bounded by drainTimeout, for the acks of the batches in
// flight. Nothing is read any more.
func (a *Agent) drain() {
	if a.sess == nil || a.flights.len() == 0 {
		return
	}
	a.log.Info("stopping: waiting for in-flight acks", "batches", a.flights.len(), "bytes", a.inflightBytes)
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	for a.sess != nil && a.flights.len() > 0 {
		select {
		case m := <-a.ackCh:
			a.handleAck(m)
		case <-a.sess.done:
			a.sessionLost()
		case <-t.C:
			a.log.Warn("stopping: in-flight acks did not arrive in time; they will be sent again after restart",
				"batches", a.flights.len(), "bytes", a.inflightBytes)
			return
		}
	}
}

// nextWake is how long the loop may sleep when no source is busy.
func (a *Agent) nextWake(now time.Time) time.Duration {
	const long = time.Hour // scans, acks and sessions wake the loop anyway
	if a.sess == nil || !a.windowRoom() {
		return long
	}
	next := now.Add(long)
	for _, s := range a.order {
		if s.f != nil && s.nextCheck.Before(next) {
			next = s.nextCheck
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// idle answers Idle; see there.
func (a *Agent) idle() bool {
	if a.flights.len() > 0 {
		return false
	}
	for _, s := range a.order {
		if s.readPos != s.acked {
			return false
		}
		fi, err := s.f.Stat()
		if err != nil {
			return false
		}
		size := fi.Size()
		if size != s.readPos && size != s.partialSize {
			return false
		}
	}
	return true
}
