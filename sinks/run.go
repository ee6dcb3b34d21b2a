package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// partKey names one partition across all aggregators.
type partKey struct {
	agg   string
	topic string
	part  int
}

// runner is the state Run shares between its goroutines.
type runner struct {
	opts Options
	sink Sink
	log  *slog.Logger

	mu        sync.Mutex
	claimed   map[partKey]string // partition → address of the aggregator loop that owns it
	closeErrs []error            // writers that could not be closed cleanly
}

// Run consumes every partition of opts.Topics from every aggregator until
// ctx is done, then closes every writer (publishing what it can within
// opts.CloseTimeout), commits, and returns. Partitions that appear later
// are picked up; aggregators that are down are retried with backoff, and
// one dead aggregator never stops the others.
//
// Run returns an error for invalid options, or after a stop that was not
// clean (a writer that could not be closed); nil otherwise. It does not
// close s.
func Run(ctx context.Context, opts Options, s Sink) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	r := &runner{opts: opts, sink: s, log: opts.Logger, claimed: map[partKey]string{}}
	var wg sync.WaitGroup
	for _, addr := range opts.Aggregators {
		wg.Go(func() { r.serveAggregator(ctx, addr) })
	}
	wg.Wait()
	if len(r.closeErrs) > 0 {
		return fmt.Errorf("sinks: unclean stop: %w", errors.Join(r.closeErrs...))
	}
	return nil
}

// claim records that the loop of addr owns k. Two addresses may lead to the
// same aggregator; only the first one consumes its partitions, or both
// would write the same output.
func (r *runner) claim(k partKey, addr string) (owner string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, taken := r.claimed[k]; taken && a != addr {
		return a, false
	}
	r.claimed[k] = addr
	return addr, true
}

func (r *runner) closeFailed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeErrs = append(r.closeErrs, err)
}

// serveAggregator lists the partitions of one aggregator every
// MetadataInterval and starts a worker for each new one. It returns once
// ctx is done and all its workers have stopped.
func (r *runner) serveAggregator(ctx context.Context, addr string) {
	log := r.log.With("addr", addr)
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[partKey]bool{}
	var c *Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	var bo backoff
	state := aggUp // of the last attempt; aggUp at first, so that the first failure is said
	for {
		if c == nil {
			var err error
			c, err = r.opts.Security.Dial(ctx, addr, r.opts.Name)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if credentialsRefused(err) {
					// A configuration error, which retrying does not
					// heal: said at ERROR on every attempt, not once.
					log.Error("aggregator refused this sink's credentials: check token or token_file", "err", err)
					state = aggRefused
				} else {
					// Down, or not there yet: said once, then at DEBUG
					// until it answers.
					lvl := slog.LevelWarn
					if state == aggDown {
						lvl = slog.LevelDebug
					}
					log.Log(ctx, lvl, "aggregator unreachable", "err", err)
					state = aggDown
				}
				r.opts.Stats.setAgg(addr, state)
				if !sleep(ctx, bo.next()) {
					return
				}
				continue
			}
		}
		parts, err := c.Metadata(ctx, r.opts.Topics)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("listing partitions", "aggregator", c.Aggregator(), "err", err)
			state = aggDown
			r.opts.Stats.setAgg(addr, state)
			c.Close()
			c = nil
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		r.opts.Stats.setAgg(addr, aggUp)
		if state != aggUp {
			log.Info("aggregator reachable", "aggregator", c.Aggregator())
			state = aggUp
		}
		bo.reset()
		for _, p := range parts {
			if len(r.opts.Topics) > 0 && !slices.Contains(r.opts.Topics, p.Topic) {
				continue
			}
			k := partKey{agg: c.Aggregator(), topic: p.Topic, part: int(p.Partition)}
			if started[k] {
				continue
			}
			started[k] = true
			if owner, ok := r.claim(k, addr); !ok {
				log.Error("two addresses lead to the same aggregator: consuming its partition from the first only",
					"aggregator", k.agg, "topic", k.topic, "partition", k.part, "first", owner)
				continue
			}
			w := newWorker(r, addr, k)
			wg.Go(func() { w.run(ctx) })
		}
		if !sleep(ctx, r.opts.MetadataInterval) {
			return
		}
	}
}

// sleep waits for d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Backoff bounds for retries.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// backoff is a capped exponential backoff with jitter. The zero value is ready.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(b.d*2, backoffMin), backoffMax)
	// ±20% jitter, so that the partitions of a dead aggregator do not all
	// knock at the same instant.
	return b.d - b.d/5 + rand.N(b.d*2/5+1)
}

func (b *backoff) reset() { b.d = 0 }
