package agent

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"logship/internal/wire"
)

// The connection: one TCP connection to one aggregator at a time.
//
// connLoop (one goroutine, started by Run) dials, hands each established
// session to the loop goroutine, and when the session ends waits with
// backoff and dials again. A session has two goroutines: the writer owns
// writes (Produce frames from the send channel, flushed when the channel is
// empty) and the reader owns reads (ProduceAck frames, passed to the loop
// through ackCh). The loop goroutine owns everything the acks change.
// Either goroutine, or the loop, ends a session with fail, which closes the
// socket and so unblocks the other one; connLoop waits for both.

// session is one established connection.
type session struct {
	addr      string
	aggID     string
	c         *wire.Conn
	send      chan *compressJob // in seq order
	done      chan struct{}
	once      sync.Once
	errv      error
	healthy   atomic.Bool // proof of life (a good ack, a heartbeat answer): resets the backoff
	wg        sync.WaitGroup
	startedAt time.Time
	limits    frameLimits // from the Welcome; read by the loop
	// draining: the agent moves home once this session's batches in
	// flight are acknowledged; nothing more is sent on it. Loop only.
	draining bool
	// down is closed by the loop once it took the session down
	// (sessionDown), after it set left: the batches the session left
	// unacknowledged, which the next session sends again. connLoop reads
	// left after down, for its failover line.
	down chan struct{}
	left unacked
}

// unacked is what a session left unacknowledged when it ended: its
// batches in flight (not dropped by a Resync or a truncation) and their
// file bytes. The next session sends those bytes again; an aggregator
// other than the session's stores them twice where the session's had
// stored them (see wire/doc.go, "Failover and exactly-once across
// aggregators").
type unacked struct {
	aggID   string // the session's aggregator, by the id of its Welcome
	addr    string
	batches int
	bytes   int64
}

// frameLimits bound the batches of one session so that each fits in one
// frame of the aggregator it is connected to (Welcome.MaxFrame).
type frameLimits struct {
	maxFrame   int // the largest frame payload the aggregator reads
	batchBytes int // a batch is built once its records reach this size
	rawMax     int // the records of a batch never exceed this size
	lineMax    int // a longer line is cut into records of this size
}

// recordOverhead bounds what a record adds to a batch's records besides
// its bytes: two uvarints (time delta and length).
const recordOverhead = 2 * binary.MaxVarintLen64

// minRawMax keeps batches useful with an absurdly small max frame; such a
// frame is refused by the aggregator, which the agent logs at ERROR.
const minRawMax = 1 << 10

// newFrameLimits derives a session's limits from the aggregator's max
// frame (0: the wire default). The records of one batch (their encoded
// size before compression, batch.Builder.RawSize) are kept to half the
// max frame; the other half is room for the batch header (under 4.5 KiB:
// names of at most 128 bytes, the path cut to 4 KiB), the Produce header
// and what compression may add (s2: at most a sixth, plus 32 bytes), for
// any max frame of at least 16 KiB (aggregators take no less than 64 KiB). With the default 16 MiB
// max frame these limits change nothing: BatchBytes is at most 8 MiB and a
// line at most 1 MiB.
func newFrameLimits(batchBytes, maxFrame int) frameLimits {
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrame
	}
	rawMax := max(maxFrame/2, minRawMax)
	return frameLimits{
		maxFrame:   maxFrame,
		batchBytes: min(batchBytes, rawMax),
		rawMax:     rawMax,
		lineMax:    min(maxLineBytes, rawMax-recordOverhead),
	}
}

// fail ends the session with err (the first error wins). Safe to call from
// any goroutine, any number of times.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.errv = err
		close(s.done)
		s.c.NetConn().Close()
	})
}

// err is why the session ended; only valid once done is closed.
func (s *session) err() error { return s.errv }

// ackMsg is an ack and the session it came on.
type ackMsg struct {
	s   *session
	ack wire.ProduceAck
}

// connStats is the connection's state and counters, for ConnStats.
// Written by connLoop's goroutine, read from any.
type connStats struct {
	connected       atomic.Bool
	aggregator      atomic.Pointer[string] // address of the current (or last tried) aggregator
	connects        atomic.Int64
	connectFailures atomic.Int64
	failovers       atomic.Int64
	sessionsLost    atomic.Int64
	heartbeats      atomic.Int64
	// resentBytes is written by the loop goroutine (sessionUp).
	resentBytes atomic.Int64

	// healthyAfterHook, when > 0, replaces healthyAfter, and
	// homeEveryHook homeEvery. Test hooks: set before Run, read by
	// connLoop's goroutine.
	healthyAfterHook time.Duration
	homeEveryHook    time.Duration
}

// ConnStats is the state of the agent's connection to its aggregators.
type ConnStats struct {
	Connected       bool   // a session is up now
	Aggregator      string // the address it is (or was last) connected or connecting to
	Connects        int64  // sessions established
	ConnectFailures int64  // dials or handshakes that failed
	Failovers       int64  // moves to another aggregator of the list
	SessionsLost    int64  // established sessions that ended other than by shutdown
	Heartbeats      int64  // heartbeats sent
	// FailoverResentBytes counts the file bytes of batches a session left
	// unacknowledged that were sent again to another aggregator than
	// that session's: stored twice where that one had stored them.
	// Counted when the session with the other aggregator starts.
	FailoverResentBytes int64
}

// ConnStats returns the connection's state. Safe for concurrent use.
func (a *Agent) ConnStats() ConnStats {
	cs := &a.conn
	out := ConnStats{
		Connected: cs.connected.Load(), Connects: cs.connects.Load(), ConnectFailures: cs.connectFailures.Load(),
		Failovers: cs.failovers.Load(), SessionsLost: cs.sessionsLost.Load(), Heartbeats: cs.heartbeats.Load(),
		FailoverResentBytes: cs.resentBytes.Load(),
	}
	if p := cs.aggregator.Load(); p != nil {
		out.Aggregator = *p
	}
	return out
}

// Aggregators returns the aggregator addresses of Options.Aggregators, in
// their order, each once: those ConnStats.Aggregator may name, for a
// metric with a series per aggregator. Safe for concurrent use.
func (a *Agent) Aggregators() []string {
	out := make([]string, 0, len(a.opts.Aggregators))
	for _, addr := range a.opts.Aggregators {
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

// Heartbeats: an idle session sends one every heartbeatInterval; a session
// that reads nothing (no ack, no heartbeat) for silenceFactor times that is
// given up, which is how a vanished aggregator behind a live route (or a
// blackholed connection) is noticed.
const (
	defaultHeartbeat = wire.HeartbeatInterval
	silenceFactor    = 3
)

func (a *Agent) heartbeatInterval() time.Duration {
	if a.opts.HeartbeatInterval > 0 {
		return a.opts.HeartbeatInterval
	}
	return defaultHeartbeat
}

// homeIndex is the agent's home in its list of aggregators: a hash of its
// id, so that a fleet spreads over the list rather than all starting with
// the first.
func homeIndex(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// homeAddr is the address of the agent's home aggregator (homeIndex).
func (a *Agent) homeAddr() string {
	return a.opts.Aggregators[homeIndex(a.opts.ID, len(a.opts.Aggregators))]
}

// connLoop keeps one session up until ctx is done. It starts at the
// aggregator the positions file names (the one the agent last sent to),
// or at home, and stays with whichever aggregator it is on
// while that one is healthy; after failoverAfter failures in a row it
// moves to the next of the list (see wire/doc.go, "Failover and
// exactly-once across aggregators", for why it does not move sooner).
// Away from home, it moves back when home takes connections again (see
// goHome), so that a fleet spreads over the list again after an
// aggregator's restart instead of staying where the failover left it.
func (a *Agent) connLoop(ctx context.Context) {
	addrs := a.opts.Aggregators
	home := homeIndex(a.opts.ID, len(addrs))
	idx, fails := home, 0
	// back is set while the agent, restarted away from home, tries the
	// aggregator it last sent to, before any healthy session: that one
	// may hold batches past the positions, which it drops as duplicates
	// and home would store. If it is down, the agent fails over home.
	back := false
	if i := slices.Index(addrs, a.startAgg); i >= 0 && i != home {
		idx, back = i, true
		a.log.Info("going back first to the aggregator this agent last sent to", "aggregator", addrs[i], "home", addrs[home])
	}
	// left is what the last session left unacknowledged, for the
	// failover line: the next session sends it again.
	var left unacked
	for ctx.Err() == nil {
		a.conn.aggregator.Store(&addrs[idx])
		homeAddr := ""
		if idx != home {
			homeAddr = addrs[home]
		}
		healthy, moveHome, s := a.connectOnce(ctx, addrs[idx], homeAddr)
		if ctx.Err() != nil {
			return
		}
		if s != nil {
			left = s.left // ctx is live: the loop set it
		}
		if moveHome {
			a.conn.failovers.Add(1)
			a.log.Info("moving back to the home aggregator", "aggregator", addrs[home], "from", addrs[idx])
			idx, fails, back = home, 0, false
			continue
		}
		if healthy {
			fails, back = 0, false
		} else {
			fails++
			if fails%failoverAfter == 0 && len(addrs) > 1 {
				from := addrs[idx]
				idx = (idx + 1) % len(addrs)
				if back {
					idx, back = home, false
				}
				a.conn.failovers.Add(1)
				// What the last session left unacknowledged is sent to
				// the next one again: another aggregator than the one it
				// was sent to stores it twice where that one had.
				attrs := []any{"aggregator", addrs[idx], "from", from, "resend_batches", left.batches, "resend_bytes", left.bytes}
				if left.batches > 0 && left.addr != from {
					attrs = append(attrs, "unacked_by", left.addr) // failed over more than once since
				}
				a.log.Info("failing over to the next aggregator", attrs...)
			}
		}
		t := time.NewTimer(backoff(fails))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is the wait before the next dial after fails failures in a row:
// exponential from backoffMin to backoffMax, with the upper half jittered.
func backoff(fails int) time.Duration {
	d := backoffMax
	if fails < 16 {
		d = min(backoffMin<<max(fails-1, 0), backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// connectOnce dials addr, runs a session until it fails or ctx is done, and
// reports whether the session was healthy. With home set (the agent's
// home aggregator, when addr is another one), it looks now and then
// whether home takes connections again; back reports that the session
// ended so that the agent moves there. s is the session once the loop
// took it down (its left is set), nil if there was none or the loop did
// not take it (ctx done first).
func (a *Agent) connectOnce(ctx context.Context, addr, home string) (healthy, back bool, taken *session) {
	d := wire.Dialer{TLS: a.opts.TLS, Timeout: dialTimeout}
	c, w, err := d.Dial(ctx, addr, wire.Hello{Role: wire.RoleAgent, ID: a.opts.ID, Token: a.opts.Token})
	if err != nil {
		if ctx.Err() == nil {
			a.conn.connectFailures.Add(1)
			if wire.IsRemote(err, wire.CodeAuth) {
				a.log.Error("aggregator refused this agent's credentials: check token or token_file", "aggregator", addr, "err", err)
			} else {
				a.log.Warn("connect to aggregator failed", "aggregator", addr, "err", err)
			}
		}
		return false, false, nil
	}
	a.conn.connects.Add(1)
	a.conn.connected.Store(true)
	defer a.conn.connected.Store(false)
	s := &session{
		addr: addr, aggID: w.Aggregator, c: c,
		send: make(chan *compressJob, maxInFlight), done: make(chan struct{}), down: make(chan struct{}),
		startedAt: time.Now(),
		limits:    newFrameLimits(a.opts.BatchBytes, int(w.MaxFrame)),
	}
	a.log.Info("connected to aggregator", "aggregator", addr, "id", w.Aggregator, "max_frame", s.limits.maxFrame)
	s.wg.Add(2)
	go a.writeLoop(s)
	go a.readLoop(s)
	select {
	case a.sessCh <- s:
		taken = s
		a.waitSession(ctx, s, home)
	case <-s.done:
	case <-ctx.Done():
		s.fail(errStopping)
	}
	s.wg.Wait()
	if taken != nil {
		// Wait until the loop took the session down, so that s.left
		// says what it left unacknowledged (the failover line gives
		// it). The loop sees s end at once; on stop, when the loop may
		// be gone, ctx ends the wait.
		select {
		case <-s.down:
		case <-ctx.Done():
		}
	}
	if errors.Is(s.err(), errGoingHome) {
		return true, true, taken
	}
	if err := s.err(); !errors.Is(err, errStopping) {
		a.conn.sessionsLost.Add(1)
		if goingAway(err) {
			a.log.Info("aggregator shutting down: reconnecting", "aggregator", addr)
		} else {
			a.log.Warn("connection to aggregator lost", "aggregator", addr, "err", err)
		}
	}
	if refused(s.err()) {
		return false, false, taken // the same batches would be refused at once: back off
	}
	if errors.Is(s.err(), wire.ErrIdle) {
		// The aggregator went silent (a hung disk holds its acks and the
		// heartbeat answers queued behind them; a stalled route): whatever
		// it answered before, count a failure, so that failoverAfter
		// silent sessions in a row move the agent on.
		return false, false, taken
	}
	if s.c.Version() >= 2 {
		// A live version 2 aggregator answers a heartbeat within one
		// interval: only that, or a good ack, is proof of life. A session
		// that merely lasted proves nothing (it may have been silent).
		return s.healthy.Load(), false, taken
	}
	// Version 1 has no heartbeats: an idle session proves nothing either
	// way, so one that lasted counts as healthy.
	after := healthyAfter
	if a.conn.healthyAfterHook > 0 {
		after = a.conn.healthyAfterHook
	}
	return s.healthy.Load() || time.Since(s.startedAt) >= after, false, taken
}

// errGoingHome ends a session that drained to move the agent home.
var errGoingHome = errors.New("agent: moving back to the home aggregator")

// waitSession waits until s, handed to the loop, ends or ctx is done. With
// home set, it looks every homeEvery or so (jittered, so that a fleet does
// not move back all at once) whether home takes a connection (a dial and a
// handshake with this agent's credentials), and when it does, asks the
// loop to move home (goHome). The loop may put the move off (moveSafe):
// it is asked again at the next look.
func (a *Agent) waitSession(ctx context.Context, s *session, home string) {
	every := homeEvery
	if a.conn.homeEveryHook > 0 {
		every = a.conn.homeEveryHook
	}
	t := time.NewTimer(every/2 + rand.N(every/2+1))
	defer t.Stop()
	var look <-chan time.Time
	if home != "" {
		look = t.C
	}
	for {
		select {
		case <-s.done:
			return
		case <-ctx.Done():
			s.fail(errStopping)
			return
		case <-look:
		}
		if a.homeTakes(ctx, s, home) {
			a.goHome(ctx, s)
		}
		t.Reset(every/2 + rand.N(every/2+1))
	}
}

// homeTakes reports whether home accepts a connection from this agent: a
// dial and a handshake, closed at once. It gives up as soon as s ends, so
// that a home that does not answer never holds up the reconnect.
func (a *Agent) homeTakes(ctx context.Context, s *session, home string) bool {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	})
	d := wire.Dialer{TLS: a.opts.TLS, Timeout: dialTimeout}
	c, _, err := d.Dial(ctx, home, wire.Hello{Role: wire.RoleAgent, ID: a.opts.ID, Token: a.opts.Token})
	if err != nil {
		a.log.Debug("home aggregator still not taking connections", "aggregator", home, "err", err)
		return false
	}
	c.NetConn().Close()
	return true
}

// goHome asks the loop to move the agent home. The loop sends nothing more
// on s and ends it once every batch in flight is acknowledged, so that the
// move duplicates nothing: a batch the aggregator may have stored is never
// sent to another (see wire/doc.go). Home then sees each source go on after
// a gap (what went to this aggregator meanwhile), which it logs and counts.
func (a *Agent) goHome(ctx context.Context, s *session) {
	select {
	case a.homeCh <- s:
	case <-s.done:
	case <-ctx.Done():
	}
}

// goingAway reports whether the aggregator closed the session because it
// stops (an Error frame with CodeUnavailable, after the acks of all it
// read): a restart or a failover, not a broken network.
func goingAway(err error) bool { return wire.IsRemote(err, wire.CodeUnavailable) }

// refused reports whether the aggregator closed the session because it
// found the agent's input malformed (a frame larger than its max frame is
// one such case).
func refused(err error) bool {
	return wire.IsRemote(err, wire.CodeProtocol)
}

// lagReport is what the agent tells the aggregator of its files: how many
// are open, their total lag, and the files that lag most, most first.
func (a *Agent) lagReport() *wire.AgentReport {
	src := a.sourceStats()
	r := &wire.AgentReport{Files: uint32(len(src))}
	slices.SortFunc(src, func(x, y SourceStats) int { return cmp.Compare(y.Lag, x.Lag) })
	for _, f := range src {
		r.LagBytes += f.Lag
		r.Lagging = append(r.Lagging, wire.FileLag{Topic: f.Topic, Path: f.Path, Size: f.Size, Acked: f.AckedPos})
	}
	return r
}

// writeLoop owns the session's writes. On a version 2 session it sends a
// heartbeat when it has written nothing for the heartbeat interval.
func (a *Agent) writeLoop(s *session) {
	defer s.wg.Done()
	var hdr [wire.ProduceHeaderSize]byte
	every := a.heartbeatInterval()
	beat := time.NewTimer(every)
	defer beat.Stop()
	if s.c.Version() < 2 {
		beat.Stop()
	}
	// Reports of the files' lag, for logship status: soon after the
	// session starts, then every heartbeat interval.
	report := time.NewTimer(min(time.Second, every))
	defer report.Stop()
	if s.c.Version() < 2 {
		report.Stop()
	}
	var nonce uint64
	var rep []byte
	for {
		select {
		case <-s.done:
			return
		case <-report.C:
			rep = a.lagReport().Encode(rep[:0])
			before := s.c.WrittenBytes
			err := s.c.WriteFrame(wire.TypeAgentReport, rep)
			if err == nil && len(s.send) == 0 {
				err = s.c.Flush()
			}
			a.wireBytes.Add(s.c.WrittenBytes - before)
			if err != nil {
				s.fail(fmt.Errorf("write report: %w", err))
				return
			}
			report.Reset(every)
		case <-beat.C:
			nonce++
			before := s.c.WrittenBytes
			err := s.c.WriteFrame(wire.TypeHeartbeat, (&wire.Heartbeat{Nonce: nonce}).Encode(hdr[:0]))
			if err == nil {
				err = s.c.Flush()
			}
			a.wireBytes.Add(s.c.WrittenBytes - before)
			if err != nil {
				s.fail(fmt.Errorf("write heartbeat: %w", err))
				return
			}
			a.conn.heartbeats.Add(1)
			beat.Reset(every)
		case j := <-s.send:
			// Jobs come in seq order; wait for this one's batch (see
			// compress.go).
			select {
			case <-j.ready:
			case <-s.done:
				return
			}
			if j.data == nil {
				// A compressor saw the session done and built nothing; the
				// select above may pick ready over done when both are.
				return
			}
			if s.c.Version() >= 2 {
				beat.Reset(every)
			}
			before := s.c.WrittenBytes
			err := s.c.WriteFrame(wire.TypeProduce, wire.EncodeProduceHeader(hdr[:0], j.seq), *j.data)
			a.putBuf(j.data)
			a.pool.putJob(j)
			if err == nil && len(s.send) == 0 {
				err = s.c.Flush()
			}
			a.wireBytes.Add(s.c.WrittenBytes - before)
			if err != nil {
				s.fail(fmt.Errorf("write: %w", err))
				return
			}
		}
	}
}

// readLoop owns the session's reads. On a version 2 session, where the
// aggregator answers heartbeats, hearing nothing for silenceFactor
// heartbeat intervals ends the session.
func (a *Agent) readLoop(s *session) {
	defer s.wg.Done()
	if s.c.Version() >= 2 {
		silence := silenceFactor * a.heartbeatInterval()
		s.c.SetReadTimeouts(silence, silence)
	}
	for {
		t, p, err := s.c.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrIdle) {
				err = fmt.Errorf("aggregator silent (no ack, no heartbeat) for %s: %w", silenceFactor*a.heartbeatInterval(), err)
			}
			s.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch t {
		case wire.TypeHeartbeat:
			// Proof of life; the read deadline moved with it.
			s.healthy.Store(true)
		case wire.TypeProduceAck:
			var m ackMsg
			m.s = s
			if err := m.ack.Decode(p); err != nil {
				s.fail(fmt.Errorf("ack: %w", err))
				return
			}
			if m.ack.Status == wire.AckAppended || m.ack.Status == wire.AckDuplicate {
				s.healthy.Store(true)
			}
			select {
			case a.ackCh <- m:
			case <-s.done:
				return
			}
		case wire.TypeError:
			s.fail(wire.DecodeError(p))
			return
		default:
			s.fail(fmt.Errorf("%w: %s", wire.ErrUnexpected, t))
			return
		}
	}
}

// flight is a batch sent and not yet acknowledged.
type flight struct {
	seq        uint64
	src        *source
	gen        uint64
	start, end int64
	size       int  // raw bytes of its records (a compressor builds the batch)
	dropped    bool // its window is already released (resync, truncation)
}

// flightQueue is the FIFO of flights in seq order; acks arrive in order.
// Its length is bounded by maxInFlight.
type flightQueue struct {
	q    []flight
	head int
}

func (f *flightQueue) len() int      { return len(f.q) - f.head }
func (f *flightQueue) push(x flight) { f.q = append(f.q, x) }
func (f *flightQueue) peek() *flight { return &f.q[f.head] }
func (f *flightQueue) all() []flight { return f.q[f.head:] }
func (f *flightQueue) reset()        { clear(f.q); f.q, f.head = f.q[:0], 0 }
func (f *flightQueue) pop() (x flight) {
	x = f.q[f.head]
	f.q[f.head] = flight{}
	f.head++
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	} else if f.head > 1024 && f.head*2 > len(f.q) {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	return x
}

// sessionUp makes s the current session; reading starts at once.
func (a *Agent) sessionUp(s *session) {
	if a.sess != nil {
		a.sessionDown(errors.New("replaced by a new session"))
	}
	a.sess = s
	if s.aggID != a.lastAgg.ID {
		a.newAggregator()
	}
	if l := a.left; l.bytes > 0 && s.aggID != l.aggID {
		// s sends again what the last session left unacknowledged, to
		// another aggregator: counted once, here (see unacked).
		a.conn.resentBytes.Add(l.bytes)
	}
	a.left = unacked{}
	// Nothing is sent to it before the positions file names it (tailPass):
	// an agent restarted after a crash goes back first to the aggregator
	// that may hold its batches past the positions (connLoop), where they
	// are duplicates.
	a.lastAgg = aggRef{Addr: s.addr, ID: s.aggID}
	now := time.Now()
	for _, src := range a.order {
		src.nextCheck = now
	}
}

// sessionLost handles the end of the current session noticed through its
// done channel. The reader queues every ack it read before it fails the
// session, so those are applied first: they are real progress.
func (a *Agent) sessionLost() {
	s := a.sess
	for more := true; more && a.sess == s; {
		select {
		case m := <-a.ackCh:
			a.handleAck(m)
		default:
			more = false
		}
	}
	if a.sess == s && refused(s.err()) && a.flights.len() > 0 {
		// Sent again after the reconnect, a batch the aggregator cannot
		// take is refused again: say so loudly, with the sizes.
		largest := 0
		for _, f := range a.flights.all() {
			largest = max(largest, f.size)
		}
		a.log.Error("aggregator refused this agent's input and closed the connection; the batches in flight are sent again after reconnecting, and one it cannot take (such as one larger than its max frame) is refused again",
			"aggregator", s.addr, "err", s.err(), "max_frame", s.limits.maxFrame,
			"first_batch_bytes", a.flights.peek().size, "largest_batch_bytes", largest,
			"batches", a.flights.len(), "raw_limit", s.limits.rawMax)
	}
	a.sessionDown(s.err())
}

// sessionDown forgets every batch in flight and rewinds every source to
// its acknowledged position: the files are the buffer, and the next
// session sends the same bytes again (the aggregator drops what it has).
func (a *Agent) sessionDown(err error) {
	if a.sess == nil {
		return
	}
	a.sess.fail(err)
	left := unacked{aggID: a.sess.aggID, addr: a.sess.addr}
	for _, f := range a.flights.all() {
		f.src.inflight--
		if !f.dropped && f.gen == f.src.gen {
			left.batches++
			left.bytes += f.end - f.start
		}
	}
	a.sess.left, a.left = left, left
	close(a.sess.down) // connLoop may read left now
	a.flights.reset()
	a.inflightBytes = 0
	now := time.Now()
	for _, s := range a.order {
		s.gen++
		if s.f != nil {
			a.moveReadPos(s, s.acked, now) // checks the file first, keeps the guard
		}
		s.readPos = s.acked // a truncation found by the check set both to 0
		s.partialSize = 0
		s.busy = false
		s.nextCheck = now
	}
	a.sess = nil
}

// dropFlights releases the window of s's batches in flight; their acks,
// when they come, are ignored.
func (a *Agent) dropFlights(s *source) {
	for i := range a.flights.all() {
		f := &a.flights.q[a.flights.head+i]
		if f.src == s && !f.dropped {
			f.dropped = true
			a.inflightBytes -= f.end - f.start
		}
	}
}

// handleAck applies one ack (see wire/doc.go). Acks come in the order the
// batches were sent; anything else is a protocol error that ends the
// session.
func (a *Agent) handleAck(m ackMsg) {
	if m.s != a.sess {
		return // a late ack of a session already given up
	}
	ack := &m.ack
	if a.flights.len() == 0 || a.flights.peek().seq != ack.Seq {
		want := uint64(0)
		if a.flights.len() > 0 {
			want = a.flights.peek().seq
		}
		a.sessionDown(fmt.Errorf("%w: ack for seq %d, expected %d", wire.ErrUnexpected, ack.Seq, want))
		return
	}
	f := a.flights.pop()
	s := f.src
	s.inflight--
	if !f.dropped {
		a.inflightBytes -= f.end - f.start
	}
	if f.dropped || f.gen != s.gen {
		return
	}
	switch ack.Status {
	case wire.AckAppended, wire.AckDuplicate:
		a.ackedBatches.Add(1)
		a.ackedBytes.Add(f.end - f.start)
		if end := max(f.end, ack.StoredEnd); end > s.acked {
			s.acked = end
			a.posDirty = true
		}
		if s.readPos < s.acked {
			// The aggregator has more of this source than was sent
			// (a duplicate after an old positions file): skip to it.
			a.log.Info("aggregator already has more of this file: skipping ahead", s.attrs("from", s.readPos, "to", s.acked)...)
			a.moveReadPos(s, s.acked, time.Now()) // a truncation found first restarts it at 0
			s.nextCheck = time.Now()
		}
	case wire.AckResync:
		a.log.Info("aggregator asks to resend from its stored end", s.attrs("stored_end", ack.StoredEnd, "position", s.readPos, "acked", s.acked)...)
		a.dropFlights(s)
		s.gen++
		if a.moveReadPos(s, max(ack.StoredEnd, 0), time.Now()) {
			s.acked = s.readPos
			s.partialSize = 0
		}
		s.nextCheck = time.Now()
		a.posDirty = true
	case wire.AckFailed:
		a.log.Warn("aggregator could not store a batch; reconnecting", s.attrs("aggregator", a.sess.addr, "err", ack.Message)...)
		a.sessionDown(fmt.Errorf("aggregator failed to store: %s", ack.Message))
	default:
		a.sessionDown(fmt.Errorf("%w: ack status %s", wire.ErrUnexpected, ack.Status))
	}
}
