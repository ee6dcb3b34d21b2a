package aggregator

import (
	"runtime"
	"sync"
	"time"
)

// queue is the bounded FIFO between two goroutines of an agent connection
// (the reader and the appender, the appender and the writer): one
// producer, one consumer. A channel would do the same, but it wakes the
// other side on every item, and waking a goroutine that waits costs far
// more than handing it an item: the goroutine that readies it keeps its
// processor, so the woken one waits until another processor wakes up and
// steals it (tens of microseconds on a virtual machine), or until the
// readier blocks. A queue wakes each side only when it must:
//
//   - a waiting consumer when wakeAt items are queued, or when the
//     producer calls flush or close (wakeAt 1: at every item);
//   - a producer waiting for room only once the queue is down to half of
//     its bounds, so that it then has half a queue to fill before it must
//     wait again.
//
// And a consumer with spin set does not park at once when the queue is
// empty: it yields its processor (runtime.Gosched) for up to spin first,
// looking again each time. Parked, it would be readied on its producer's
// processor and wait there for that one to block or for the other
// processor's thread to wake and steal it: 100 to 200 µs on a loaded
// 2-vCPU virtual machine (execution trace of BenchmarkIngest), several
// batches' time. Yielding, it keeps its processor awake and runs as soon
// as the next item comes, while any goroutine that wants the processor
// still gets it.
//
// Its bounds are a number of items and, optionally, their total weight
// (bytes): an item is taken while the weight is below maxWeight, so the
// weight stays under maxWeight plus one item. The weight counts the items
// queued and those the consumer took and has not said it is done with
// (done): a consumer that takes several before it handles them (the
// appender's groups) does not make room for more meanwhile.
type queue[T any] struct {
	mu         sync.Mutex
	items      []T // ring of fixed capacity
	head, n    int
	weights    []int // the weight of each item, by ring slot
	weight     int   // of the items queued, and of those taken but not done
	taken      int   // weight of the items taken but not done
	maxWeight  int   // 0: no bound on weight
	wakeAt     int
	closed     bool
	getWaiting bool          // the consumer waits on canGet
	putWaiting bool          // the producer waits on canPut
	canGet     chan struct{} // capacity 1
	canPut     chan struct{} // capacity 1
	spin       time.Duration // how long get yields before it parks (0: parks at once); set before use
}

// newQueue returns an empty queue of at most maxItems items, whose weight
// is bounded by maxWeight (0: not bounded), and whose consumer is woken
// when wakeAt items are queued.
func newQueue[T any](maxItems, maxWeight, wakeAt int) *queue[T] {
	return &queue[T]{
		items: make([]T, maxItems), weights: make([]int, maxItems), maxWeight: maxWeight,
		wakeAt: max(1, min(wakeAt, maxItems)), canGet: make(chan struct{}, 1), canPut: make(chan struct{}, 1),
	}
}

// full reports whether put must wait. Caller holds mu.
func (q *queue[T]) full() bool {
	return q.n == len(q.items) || (q.maxWeight > 0 && q.weight >= q.maxWeight)
}

// waitRoom waits while the queue is full: a producer that calls it before
// it makes an item (before it takes memory for it) holds no item while
// it waits. Producer only.
func (q *queue[T]) waitRoom() {
	q.mu.Lock()
	q.waitRoomLocked()
	q.mu.Unlock()
}

// waitRoomLocked is waitRoom for a caller that holds mu; it returns with
// mu held.
func (q *queue[T]) waitRoomLocked() {
	for q.full() {
		q.putWaiting = true
		q.mu.Unlock()
		<-q.canPut
		q.mu.Lock()
	}
}

// put appends v, first waiting while the queue is full. Producer only.
func (q *queue[T]) put(v T, weight int) {
	q.mu.Lock()
	q.waitRoomLocked()
	i := (q.head + q.n) % len(q.items)
	q.items[i], q.weights[i] = v, weight
	q.n++
	q.weight += weight
	if q.getWaiting && q.n >= q.wakeAt {
		q.wakeGetter()
	}
	q.mu.Unlock()
}

// flush wakes a waiting consumer if anything is queued: the producer
// calls it before it may wait for a while. Producer only.
func (q *queue[T]) flush() {
	q.mu.Lock()
	if q.getWaiting && q.n > 0 {
		q.wakeGetter()
	}
	q.mu.Unlock()
}

// close tells the consumer that nothing more comes once the queue is
// drained. Producer only, once.
func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	if q.getWaiting {
		q.wakeGetter()
	}
	q.mu.Unlock()
}

// wakeGetter wakes the waiting consumer. Caller holds mu.
func (q *queue[T]) wakeGetter() {
	q.getWaiting = false
	q.canGet <- struct{}{}
}

// get removes the oldest item, waiting while the queue is empty; ok is
// false once the queue is closed and drained. Consumer only.
func (q *queue[T]) get() (v T, ok bool) {
	q.mu.Lock()
	if q.n == 0 && !q.closed && q.spin > 0 {
		q.mu.Unlock()
		for until := time.Now().Add(q.spin); ; {
			runtime.Gosched()
			q.mu.Lock()
			if q.n > 0 || q.closed || time.Now().After(until) {
				break
			}
			q.mu.Unlock()
		}
	}
	for q.n == 0 {
		if q.closed {
			q.mu.Unlock()
			return v, false
		}
		q.getWaiting = true
		q.mu.Unlock()
		<-q.canGet
		q.mu.Lock()
	}
	return q.takeLocked(), true
}

// takeLocked removes the oldest item, which must exist, and wakes a
// producer waiting for room once the queue is down to half. Caller holds
// mu; it returns with mu released.
func (q *queue[T]) takeLocked() (v T) {
	var zero T
	v, q.items[q.head] = q.items[q.head], zero
	q.taken += q.weights[q.head]
	q.head = (q.head + 1) % len(q.items)
	q.n--
	q.wakePutter()
	q.mu.Unlock()
	return v
}

// done tells the queue that the consumer is done with the items it took,
// except for keep of their weight (an item it holds on to), which stays
// counted until the next done. Consumer only.
func (q *queue[T]) done(keep int) {
	q.mu.Lock()
	q.weight -= q.taken - keep
	q.taken = keep
	q.wakePutter()
	q.mu.Unlock()
}

// wakePutter wakes a producer waiting for room once the queue is down to
// half of its bounds. Caller holds mu.
func (q *queue[T]) wakePutter() {
	if q.putWaiting && 2*q.n <= len(q.items) && (q.maxWeight == 0 || 2*q.weight <= q.maxWeight) {
		q.putWaiting = false
		q.canPut <- struct{}{}
	}
}

// tryGet removes the oldest item if there is one, without waiting.
// Consumer only.
func (q *queue[T]) tryGet() (v T, ok bool) {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return v, false
	}
	return q.takeLocked(), true
}

// empty reports whether nothing is queued: for the consumer, that get
// would wait; for the producer, that the consumer may be waiting.
func (q *queue[T]) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n == 0
}
