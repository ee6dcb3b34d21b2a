package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	// IgnoreOlder skips files seen for the first time whose last
	// modification is older than this (0: none are skipped). A file the
	// positions file has an entry for is always resumed; a skipped file is
	// picked up when it is written again.
	IgnoreOlder time.Duration
	// Multiline joins lines into records; nil: one line is one record.
	Multiline *Multiline
}

// Multiline is a rule that joins consecutive lines into one record (see
// doc.go, "Multiline").
type Multiline struct {
	// Pattern is an RE2 regular expression matched against each line.
	Pattern string
	// Match is "start" (default): a line that matches starts a record and
	// the lines that do not continue it; or "continuation": a line that
	// matches continues the record before it, and the others start one.
	Match string
	// Negate inverts the match.
	Negate bool
	// MaxLines and MaxBytes bound a record (defaults 500 lines and
	// MaxLineBytes); a longer one is cut into several records, counted in
	// Stats.RecordsSplit.
	MaxLines int
	MaxBytes int
	// Timeout is how long the last record of a file may wait for a line
	// that tells whether it is complete (default 1s).
	Timeout time.Duration
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
	// Compressors is how many goroutines compress batches in parallel
	// (default GOMAXPROCS; see compress.go).
	Compressors int
	// ScanInterval is how often the globs are expanded again (default 1s).
	ScanInterval time.Duration
	// PollInterval is how often an idle file is checked for growth
	// (default 250ms).
	PollInterval time.Duration
	// PositionsInterval bounds how often the positions file is written
	// (default 1s; it is also written at shutdown).
	PositionsInterval time.Duration
	// MaxOpenFiles bounds the files the agent holds open (default 1024);
	// files found beyond it wait until others are closed.
	MaxOpenFiles int
	// DrainTimeout bounds how long a file that is rotated away or deleted
	// is kept open to be read to its end (default 24h). Bytes not shipped
	// by then are given up: logged with the file name and counted.
	DrainTimeout time.Duration
	// MaxLineBytes is the longest record (default 1 MiB, at most 8 MiB): a
	// longer line is cut into records of this size, counted.
	MaxLineBytes int
	// PartialTimeout is how long a last line without its newline is held
	// back (default 5s); then it is shipped as it is.
	PartialTimeout time.Duration
	// NoWatch turns file events (fsnotify) off: polling alone.
	NoWatch bool
	Inputs  []Input
	Logger  *slog.Logger // nil: discard

	// The connection (conn.go): TLS, when set, makes it TLS (see
	// wire.ClientTLSConfig); Token is sent in the Hello. HeartbeatInterval
	// is how often an idle connection sends a heartbeat (default 10s); a
	// connection that hears nothing for 3× that is given up.
	TLS               *tls.Config
	Token             string
	HeartbeatInterval time.Duration
}

// Defaults.
const (
	DefaultBatchBytes        = 256 << 10
	DefaultBatchWait         = 200 * time.Millisecond
	DefaultWindowBytes       = 16 << 20
	DefaultScanInterval      = time.Second
	DefaultPollInterval      = 250 * time.Millisecond
	DefaultPositionsInterval = time.Second
	DefaultMaxOpenFiles      = 1024
	DefaultDrainTimeout      = 24 * time.Hour
	DefaultMaxLineBytes      = 1 << 20
	DefaultPartialTimeout    = 5 * time.Second
	DefaultMultilineLines    = 500
	DefaultMultilineTimeout  = time.Second
)

// Fixed limits of this version; a later version makes some of them settings.
const (
	// maxBatchBytes bounds BatchBytes, so that a batch plus one maximal line
	// stays far below batch.MaxSize and the aggregator's default max frame.
	maxBatchBytes = 8 << 20
	// maxLineBytes bounds MaxLineBytes and a multiline rule's MaxBytes.
	maxLineBytes = 8 << 20
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
	// homeEvery: an agent connected to another aggregator than its home
	// (after a failover) looks about this often (jittered) whether home
	// takes it again, and if so moves back once its batches in flight
	// are acknowledged (see conn.go, goHome).
	homeEvery = time.Minute
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
	// FilesWaiting is how many files the last scan found and could not
	// open for MaxOpenFiles.
	FilesWaiting int
	// RecordsSplit counts lines and multiline records cut at MaxLineBytes
	// or at a multiline limit.
	RecordsSplit int64
	// GivenUpBytes counts bytes never shipped: rotated or deleted files not
	// drained within DrainTimeout, truncated files whose unread bytes no
	// copy kept. Each case is also logged with the file name.
	GivenUpBytes int64
	// WindowFull is how long, in all, reading stopped because the window
	// of unacknowledged bytes was full: the agent's backpressure.
	WindowFull time.Duration
	// InflightBytes are the file bytes sent and not acknowledged yet.
	InflightBytes int64
	// Sources are the open files, in no particular order.
	Sources []SourceStats
}

// SourceStats are the metrics of one open file.
type SourceStats struct {
	Topic string
	Path  string
	// ReadBytes counts the file bytes put in batches since the file was
	// opened (again after a reconnect).
	ReadBytes int64
	// AckedPos is the acknowledged position; Size the file's size at the
	// agent's last look; Lag is Size - AckedPos (at least 0).
	AckedPos, Size, Lag int64
	// GivenUpBytes counts its bytes given up (see Stats).
	GivenUpBytes int64
}

// Agent tails files and ships them to an aggregator. Create it with New,
// run it once with Run. Stats and Idle may be called from any goroutine.
type Agent struct {
	opts    Options
	log     *slog.Logger
	posPath string

	// Everything below, up to the channels, is owned by the loop goroutine
	// (the one that calls Run): sources, in-flight batches, the window.
	restored      *restoredSet         // unclaimed entries of the positions file
	released      map[fileKey]posEntry // entries of files closed because a reload removed their input (reload.go)
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
	needSave      bool // a source waits for the positions file to name it
	scanGen       uint64
	firstScan     bool
	lastScan      time.Time
	inputs        []*input
	ghosts        []*ghost               // truncated sources waiting for their copy
	held          []*heldCopy            // new files that may be copies in progress
	closed        map[fileKey]closedFile // files closed lately: a late rename event must not open them again
	waiting       int                    // files the last scan could not open (MaxOpenFiles)
	warnedLimit   bool
	watch         *watcher // nil: polling only
	lock          *os.File // flock on StateDir/lock, held until Run returns

	waitingFiles map[fileKey]*waitingFile // files waiting for MaxOpenFiles, until opened or given up (scan.go)
	ghostFlights map[uint64]ghostFlight   // by seq: batches in flight of sources when they were truncated (copytrunc.go)
	lastAgg      aggRef                   // the aggregator of the last session (sessionUp), or the positions file's
	savedAgg     aggRef                   // the aggregator the positions file names
	left         unacked                  // what the last session left unacknowledged, until the next one starts (sessionUp)
	startAgg     string                   // the address the positions file names: connLoop dials it first

	ackCh    chan ackMsg
	sessCh   chan *session
	homeCh   chan *session // connLoop asks the loop to move s's agent home
	idleCh   chan chan bool
	reloadCh chan reloadReq
	started  atomic.Bool
	loopUp   atomic.Bool
	loopDone chan struct{}

	// loopIters counts loop iterations; tests use it to let time pass
	// without sleeping.
	loopIters atomic.Int64

	bufPool sync.Pool
	pool    *compressPool // compresses batches for the loop (compress.go)

	conn connStats // the connection's state and counters (conn.go)

	lines, rawBytes, wireBytes, batches, ackedBatches, ackedBytes, openFiles atomic.Int64
	filesWaiting, recordsSplit, givenUp                                      atomic.Int64

	// Backpressure, for metrics: windowFull is the time the window was
	// full, in ns, up to fullSince (loop goroutine), when a full spell
	// began (zero while not full); inflight mirrors inflightBytes.
	windowFull, inflight atomic.Int64
	fullSince            time.Time

	srcMu   sync.Mutex
	srcList []*source // the open sources, for Stats; replaced, never changed in place
}

// New checks opts, creates the state directory, locks it (two agents must
// not share one: an error names the directory) and loads the positions
// file. A corrupt positions file is not an error: it is kept aside as
// positions.broken and the agent starts afresh. The lock is held until Run
// returns; an Agent that is never run must be closed with Close.
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
	lock, err := lockDir(opts.StateDir)
	if err != nil {
		return nil, err
	}
	// The Builder only collects records: the pool compresses them.
	b, err := batch.NewBuilder(batch.None)
	if err != nil {
		lock.Close()
		return nil, err
	}
	pool, err := newCompressPool(opts.Compression, opts.Compressors, opts.BatchBytes)
	if err != nil {
		b.Close()
		lock.Close()
		return nil, err
	}
	b.Take(pool.getRaw()) // the Builder starts with a buffer sized for a batch
	a := &Agent{
		opts:      opts,
		log:       log,
		posPath:   filepath.Join(opts.StateDir, positionsFile),
		sources:   make(map[fileKey]*source),
		builder:   b,
		pool:      pool,
		buf:       make([]byte, readBufSize),
		fpBuf:     make([]byte, fingerprintMax),
		firstScan: true,
		ackCh:     make(chan ackMsg, 64),
		sessCh:    make(chan *session),
		homeCh:    make(chan *session),
		idleCh:    make(chan chan bool),
		reloadCh:  make(chan reloadReq),
		loopDone:  make(chan struct{}),
		inputs:    compileInputs(opts.Inputs, opts.MaxLineBytes),
		lock:      lock,
	}
	entries, agg, err := a.loadPositions()
	a.lastAgg, a.savedAgg, a.startAgg = agg, agg, agg.Addr
	if err != nil {
		b.Close()
		pool.close()
		lock.Close()
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
	if o.Compressors < 0 {
		errs = append(errs, fmt.Errorf("compressors %d is negative", o.Compressors))
	}
	errs = append(errs, checkInputs(o.Inputs, o.MaxLineBytes)...)
	if o.MaxOpenFiles < 0 {
		errs = append(errs, fmt.Errorf("max open files %d is negative", o.MaxOpenFiles))
	}
	if o.MaxLineBytes < 0 || o.MaxLineBytes > maxLineBytes {
		errs = append(errs, fmt.Errorf("max line bytes %d out of range [1, %d]", o.MaxLineBytes, maxLineBytes))
	}
	if o.DrainTimeout < 0 || o.PartialTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %v, partial timeout %v: negative", o.DrainTimeout, o.PartialTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("agent: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// checkInputs reports every problem of a set of inputs.
func checkInputs(ins []Input, maxLine int) []error {
	var errs []error
	if len(ins) == 0 {
		errs = append(errs, errors.New("at least one input is required"))
	}
	for i, in := range ins {
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
		if in.IgnoreOlder < 0 {
			errs = append(errs, fmt.Errorf("input %q: ignore older %v is negative", in.Topic, in.IgnoreOlder))
		}
		if ml := in.Multiline; ml != nil {
			if _, err := compileMultiline(ml, maxLine); err != nil {
				errs = append(errs, fmt.Errorf("input %q: %w", in.Topic, err))
			}
		}
	}
	return errs
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
	if o.Compressors == 0 {
		o.Compressors = runtime.GOMAXPROCS(0)
	}
	def(&o.BatchWait, DefaultBatchWait)
	def(&o.ScanInterval, DefaultScanInterval)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.PositionsInterval, DefaultPositionsInterval)
	def(&o.DrainTimeout, DefaultDrainTimeout)
	def(&o.PartialTimeout, DefaultPartialTimeout)
	if o.MaxOpenFiles == 0 {
		o.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	o.Inputs = copyInputs(o.Inputs)
}

// copyInputs copies inputs deeply enough that the caller may change its
// slices afterwards.
func copyInputs(ins []Input) []Input {
	out := make([]Input, len(ins))
	for i, in := range ins {
		in.Paths = append([]string(nil), in.Paths...)
		in.Exclude = append([]string(nil), in.Exclude...)
		if in.Multiline != nil {
			ml := *in.Multiline
			in.Multiline = &ml
		}
		out[i] = in
	}
	return out
}

// Stats returns totals since start. Safe to call concurrently.
func (a *Agent) Stats() Stats {
	return Stats{
		Lines:         a.lines.Load(),
		RawBytes:      a.rawBytes.Load(),
		WireBytes:     a.wireBytes.Load(),
		Batches:       a.batches.Load(),
		AckedBatches:  a.ackedBatches.Load(),
		AckedBytes:    a.ackedBytes.Load(),
		OpenFiles:     int(a.openFiles.Load()),
		FilesWaiting:  int(a.filesWaiting.Load()),
		RecordsSplit:  a.recordsSplit.Load(),
		GivenUpBytes:  a.givenUp.Load(),
		WindowFull:    time.Duration(a.windowFull.Load()),
		InflightBytes: a.inflight.Load(),
		Sources:       a.sourceStats(),
	}
}

// sourceStats reads the metrics of the open sources.
func (a *Agent) sourceStats() []SourceStats {
	a.srcMu.Lock()
	list := a.srcList
	a.srcMu.Unlock()
	out := make([]SourceStats, 0, len(list))
	for _, s := range list {
		st := &s.stats
		ss := SourceStats{
			ReadBytes: st.read.Load(), AckedPos: st.acked.Load(), Size: st.size.Load(), GivenUpBytes: st.up.Load(),
		}
		if p := st.topic.Load(); p != nil {
			ss.Topic = *p
		}
		if p := st.path.Load(); p != nil {
			ss.Path = *p
		}
		ss.Lag = max(ss.Size-ss.AckedPos, 0)
		out = append(out, ss)
	}
	return out
}

// publishSources makes the current sources those Stats reports. Loop
// goroutine.
func (a *Agent) publishSources() {
	list := make([]*source, 0, len(a.order))
	for _, s := range a.order {
		s.publish()
		list = append(list, s)
	}
	a.srcMu.Lock()
	a.srcList = list
	a.srcMu.Unlock()
}

// Close releases what New took, for an Agent whose Run was never called.
// Run releases it itself.
func (a *Agent) Close() error {
	if !a.started.CompareAndSwap(false, true) {
		return nil
	}
	a.builder.Close()
	a.pool.close()
	return a.lock.Close()
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
		return errors.New("agent: Run called twice, or after Close")
	}
	defer a.lock.Close()
	defer a.builder.Close()
	defer a.pool.close()
	if !a.opts.NoWatch {
		w, err := newWatcher(a.log)
		if err != nil {
			a.log.Warn("file events not available: polling only", "err", err)
		} else {
			a.watch = w
			defer w.close()
		}
	}

	a.pool.start(a)
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
			a.ack(m)
		case s := <-a.sessCh:
			s.fail(errStopping)
		}
	}
	a.pool.stop() // the loop and the writers are gone: nothing is queued
	if a.sess != nil {
		a.sessionDown(errStopping)
		a.settleGhostFlights()
	}
	err := a.savePositions()
	for _, s := range a.order {
		a.closeSource(s)
	}
	a.closeHeld()
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
		if a.sess != nil && a.sess.draining {
			switch {
			case !a.moveSafe():
				// A truncated file's copy must be resumed here first:
				// send on, and move when connLoop asks again.
				a.sess.draining = false
				a.log.Info("moving back to the home aggregator later: a truncated file's copy is resumed here first")
			case a.flights.len() == 0 && a.tailsAcked():
				// The positions file at the acknowledged positions: a
				// copytruncate seen after the move resumes its copy there,
				// not below, at what home has never seen.
				if a.savePositions() == nil {
					a.sess.fail(errGoingHome) // connLoop dials home
				} else {
					// Stay, and send on: connLoop asks again later.
					a.sess.draining = false
					a.log.Warn("moving back to the home aggregator later: the positions file cannot be written")
				}
			case a.flights.len() == 0:
				a.sess.draining = false // a file shrank: its truncation comes first
			}
		}
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
		var kick <-chan struct{}
		if a.watch != nil {
			kick = a.watch.kick
		}
		select {
		case <-ctx.Done():
			return
		case m := <-a.ackCh:
			a.ack(m)
		case s := <-a.sessCh:
			a.sessionUp(s)
			a.settleGhostFlights() // a session it replaced is gone
		case s := <-a.homeCh:
			if s == a.sess && !s.draining && a.moveSafe() {
				s.draining = true
				a.log.Info("home aggregator takes connections again: moving back once the batches in flight are acknowledged",
					"aggregator", s.addr, "home", a.homeAddr(), "batches", a.flights.len())
			}
		case <-sessDone:
			a.lostSession()
		case <-scanT.C:
			a.scan(time.Now())
		case <-posT.C:
			if a.posDirty {
				a.savePositions()
			}
		case r := <-a.idleCh:
			r <- a.idle()
		case r := <-a.reloadCh:
			r.done <- a.reload(r.inputs)
		case <-kick:
			a.fileEvents(time.Now())
		case <-wakeC:
		}
	}
}

// fileEvents applies the watcher's hints: written files are checked now
// (an untracked one the globs match, such as a file created empty and
// then written, is considered at once); a file renamed from a name the
// globs match (or from a tracked file's name), directly or through a
// chain of renames (see followRenames), is followed to its new name, even
// one no glob matches, so that a file created and rotated away between
// two scans (a second rotation while the agent is behind) is still found;
// a file created, renamed or removed starts a scan.
func (a *Agent) fileEvents(now time.Time) {
	written, moves, rescan := a.watch.take()
	var news []*newFile
	for _, f := range a.followRenames(moves) {
		if a.recentlyClosed(f.path, now) {
			continue
		}
		if nf := a.consider(f.in, f.path, news, now); nf != nil {
			a.log.Info("file found by its rename from a name the globs match", "topic", f.in.Topic, "source", f.path, "from", f.from)
			news = append(news, nf)
		}
	}
	for _, s := range a.order {
		if _, ok := written[s.path]; ok {
			delete(written, s.path)
			if s.nextCheck.After(now) {
				s.nextCheck = now
			}
		}
	}
	if !rescan {
		for p := range written {
			if in := a.globInput(p); in != nil {
				if nf := a.consider(in, p, news, now); nf != nil {
					news = append(news, nf)
				}
			}
		}
	}
	if len(news) > 0 {
		a.startNew(news, now)
	}
	if rescan {
		a.scan(now)
	} else if len(a.held) > 0 && len(written) > 0 {
		a.reviewHeld(now) // a copy in progress grew
	}
}

// followed is a name to follow after a batch of renames.
type followed struct {
	path, from string
	in         *input
}

// followRenames returns the names a batch of renames (in the order they
// happened) leaves files of the inputs at: those whose last rename in the
// batch came from a name the globs match, from a tracked file's name, or
// from a name that such a rename earlier in the batch filled. The chain
// matters when the loop takes the events late: after a shift rotation
// done three times (.2 to .3, .1 to .2, app.log to .1, each time), the
// file now at .2 came from app.log through .1, and .1 was neither matched
// nor tracked when it moved on. The files are looked at now, not when
// they were renamed: what is at a followed name now is what the last
// rename left there (or nothing).
func (a *Agent) followRenames(moves []move) []followed {
	if len(moves) == 0 {
		return nil
	}
	type via struct {
		in   *input // nil: the file there is none of the inputs'
		from string
	}
	at := make(map[string]via) // names renamed to in this batch
	var order []string
	for _, m := range moves {
		v, ok := at[m.from]
		if !ok {
			v.in = a.inputOf(m.from)
		}
		delete(at, m.from) // vacated: what appears there next is judged afresh
		if _, ok := at[m.to]; !ok {
			order = append(order, m.to)
		}
		at[m.to] = via{in: v.in, from: m.from}
	}
	var out []followed
	for _, p := range order {
		if v, ok := at[p]; ok && v.in != nil && !slices.ContainsFunc(out, func(f followed) bool { return f.path == p }) {
			out = append(out, followed{path: p, from: v.from, in: v.in})
		}
	}
	return out
}

// closedFile is a file the agent closed lately, and how to know it again.
type closedFile struct {
	at    time.Time
	born  birth // zero: no birth time
	fp    uint64
	fpLen int
	size  int64
}

// recentlyClosed reports whether path is a file the agent closed (drained
// and acknowledged, or given up) lately: a rename event that arrives after
// the scan that closed it must not open it again. Its (device, inode) is
// not enough: a deleted file's inode is reused at once by a new file,
// which may be rotated away before a scan sees it. So the file must also
// have the closed file's first bytes, and its birth time or, without
// birth times, its size: birth times come from a coarse clock, and a new
// file created within a tick of the closed one's birth has the same.
// Entries older than two scan intervals are forgotten.
func (a *Agent) recentlyClosed(path string, now time.Time) bool {
	for k, c := range a.closed {
		if now.Sub(c.at) > 2*a.opts.ScanInterval+time.Second {
			delete(a.closed, k)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	k, ok := keyOf(fi)
	c, closed := a.closed[k]
	if !ok || !closed {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if b, ok := birthTime(f); ok && c.born != (birth{}) {
		if b != c.born {
			return false
		}
	} else if fi.Size() != c.size {
		return false
	}
	fp, err := fingerprintN(f, c.fpLen, a.fpBuf)
	return err == nil && fp == c.fp
}

// noteClosed remembers s, about to be closed, for recentlyClosed.
func (a *Agent) noteClosed(s *source, size int64, now time.Time) {
	if a.closed == nil {
		a.closed = make(map[fileKey]closedFile)
	}
	c := closedFile{at: now, size: size}
	if b, ok := birthTime(s.f); ok {
		c.born = b
	}
	if s.hasID {
		c.fp, c.fpLen = s.fp, s.fpLen
	} else if n := int(min(size, fingerprintMax)); n > 0 {
		// No identity yet (nothing shipped under one): its first bytes,
		// read now, tell a new file on the same inode from it.
		if fp, err := fingerprintN(s.f, n, a.fpBuf); err == nil {
			c.fp, c.fpLen = fp, n
		}
	}
	a.closed[s.key] = c
}

// globInput returns the first input whose globs match path (not
// excluded); nil if none.
func (a *Agent) globInput(path string) *input {
	for _, in := range a.inputs {
		for _, p := range in.Paths {
			if matchPath(p, path) && !excluded(in.Exclude, path) {
				return in
			}
		}
	}
	return nil
}

// inputOf returns the input whose globs match path (not excluded), or that
// of the source whose current path it is; nil if none.
func (a *Agent) inputOf(path string) *input {
	if in := a.globInput(path); in != nil {
		return in
	}
	for _, s := range a.order {
		if s.path == path && !s.stopping {
			return s.in
		}
	}
	return nil
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
			a.ack(m)
		case <-a.sess.done:
			a.lostSession()
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
	if a.sess == nil || a.sess.draining || !a.windowRoom() {
		return long
	}
	if a.lastAgg != a.savedAgg {
		// Nothing is read until the positions file names the session's
		// aggregator (tailPass): try the write again at this pace, not
		// at the sources'.
		return max(a.opts.PositionsInterval, time.Millisecond)
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
	if a.flights.len() > 0 || len(a.held) > 0 {
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
