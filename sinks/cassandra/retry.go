package cassandra

import (
	"sync"
	"time"
)

// retryQueue holds the jobs waiting out a backoff, each with its timer,
// and those whose wait is over until one of the sink's goroutines takes
// them (pop). A parked job holds no goroutine: that is what keeps one
// failing partition key from taking all of them (loop). What a writer may
// park is bounded by its cap on unfinished jobs (writer.send).
//
// Its methods are safe for concurrent use: the sink's goroutines park and
// pop, timers make jobs ready, a writer's Close expires its jobs, and the
// Sink's Close stops it.
type retryQueue struct {
	wake chan struct{} // buffered 1: signalled while ready is not empty

	mu      sync.Mutex
	waiting map[*job]*time.Timer
	ready   []*job
	closed  bool
	// timers counts the timer callbacks armed and neither run nor
	// stopped, so that close can wait for them: no callback runs after
	// the Sink's Close returns.
	timers sync.WaitGroup
}

func newRetryQueue() *retryQueue {
	return &retryQueue{wake: make(chan struct{}, 1), waiting: map[*job]*time.Timer{}}
}

// after parks j until d has passed. It returns false, leaving j to the
// caller, when the queue is closed.
func (q *retryQueue) after(j *job, d time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.timers.Add(1)
	// The callback takes q.mu: it cannot look j up before it is stored.
	q.waiting[j] = time.AfterFunc(d, func() {
		defer q.timers.Done()
		q.mu.Lock()
		defer q.mu.Unlock()
		if _, ok := q.waiting[j]; ok {
			delete(q.waiting, j)
			q.push(j)
		}
	})
	return true
}

// push makes j ready. q.mu is held.
func (q *retryQueue) push(j *job) {
	q.ready = append(q.ready, j)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns the oldest ready job, or nil.
func (q *retryQueue) pop() *job {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ready) == 0 {
		return nil
	}
	j := q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	if len(q.ready) > 0 {
		// One wake-up per pop: another goroutine takes the next.
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return j
}

// expire makes the parked jobs of w ready now: w was cancelled, and they
// end at once (run sees the context) instead of holding their rows until
// their timers fire.
func (q *retryQueue) expire(w *writer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for j, t := range q.waiting {
		if j.w == w && t.Stop() {
			q.timers.Done()
			delete(q.waiting, j)
			q.push(j)
		}
	}
}

// close stops every timer, waits for the callbacks already running, and
// returns the jobs it held, parked or ready: the caller finishes them.
func (q *retryQueue) close() []*job {
	q.mu.Lock()
	q.closed = true
	left := q.ready
	for j, t := range q.waiting {
		if t.Stop() {
			q.timers.Done()
		}
		left = append(left, j)
	}
	q.waiting, q.ready = nil, nil
	q.mu.Unlock()
	q.timers.Wait() // a callback that lost the race finds waiting empty
	return left
}
