package aggregator

import (
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestQueueOrderAndClose: items come out in order, and get reports the
// end only once the queue is closed and drained.
func TestQueueOrderAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue[int](4, 0, 1)
		go func() {
			for i := range 100 {
				q.put(i, 0)
			}
			q.close()
		}()
		for want := range 100 {
			if got, ok := q.get(); !ok || got != want {
				t.Fatalf("get: %d, %v; want %d", got, ok, want)
			}
		}
		if _, ok := q.get(); ok {
			t.Fatal("get after close and drain: ok")
		}
	})
}

// TestQueueBounds: the producer waits when the queue holds maxItems, or
// when the items' weight reached maxWeight (one item over the weight is
// taken, never two; items the consumer took count until it is done with
// them), and is woken only once the queue is down to half.
func TestQueueBounds(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		maxItems, maxWeight   int
		weight                int
		fits, getsBeforeWoken int // items taken before the producer waits; gets before it goes on
	}{
		{name: "items", maxItems: 8, weight: 0, fits: 8, getsBeforeWoken: 4},
		{name: "weight", maxItems: 16, maxWeight: 1000, weight: 300, fits: 4, getsBeforeWoken: 3},          // 1200 held; on at <= 500
		{name: "one-heavy-item", maxItems: 16, maxWeight: 1000, weight: 5000, fits: 1, getsBeforeWoken: 1}, // taken into an empty queue
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newQueue[int](tc.maxItems, tc.maxWeight, 1)
				var put atomic.Int64
				go func() {
					for i := range 100 {
						q.put(i, tc.weight)
						put.Add(1)
					}
				}()
				synctest.Wait()
				if n := put.Load(); n != int64(tc.fits) {
					t.Fatalf("%d items taken before the producer waits, want %d", n, tc.fits)
				}
				for i := range tc.getsBeforeWoken {
					if i > 0 {
						synctest.Wait()
						if n := put.Load(); n != int64(tc.fits) {
							t.Fatalf("producer woken after %d gets, want %d", i, tc.getsBeforeWoken)
						}
					}
					q.get()
					if tc.maxWeight > 0 {
						// Taken, not done: its weight still counts.
						synctest.Wait()
						if n := put.Load(); n != int64(tc.fits) {
							t.Fatalf("producer woken after %d gets, before the consumer was done with them", i+1)
						}
					}
					q.done(0)
				}
				synctest.Wait()
				if n := put.Load(); n <= int64(tc.fits) {
					t.Fatalf("producer still waits after %d gets", tc.getsBeforeWoken)
				}
				for range 100 - tc.getsBeforeWoken {
					q.get()
					q.done(0)
				}
			})
		})
	}
}

// TestQueueWakeAt: a waiting consumer is woken when wakeAt items are
// queued, or at once by flush or close, not by each item.
func TestQueueWakeAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue[int](16, 0, 4)
		var got atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, ok := q.get(); !ok {
					return
				}
				got.Add(1)
			}
		}()
		synctest.Wait() // the consumer waits
		for i := range 3 {
			q.put(i, 0)
		}
		synctest.Wait()
		if n := got.Load(); n != 0 {
			t.Fatalf("consumer woken by %d items, below wakeAt", n)
		}
		q.put(3, 0)
		synctest.Wait()
		if n := got.Load(); n != 4 {
			t.Fatalf("%d items taken after wakeAt, want 4", n)
		}
		q.put(4, 0)
		synctest.Wait()
		if n := got.Load(); n != 4 {
			t.Fatalf("consumer woken by one item")
		}
		q.flush()
		synctest.Wait()
		if n := got.Load(); n != 5 {
			t.Fatalf("%d items taken after flush, want 5", n)
		}
		q.put(5, 0)
		q.close()
		<-done
		if n := got.Load(); n != 6 {
			t.Fatalf("%d items taken after close, want 6", n)
		}
	})
}

// TestQueueSpin: a consumer that spins before it parks gets what is put
// while it spins, in order, sees the close, and, spin over, parks and is
// woken by the next put as one that parks at once is.
func TestQueueSpin(t *testing.T) {
	t.Run("put while spinning", func(t *testing.T) {
		q := newQueue[int](4, 0, 1)
		q.spin = time.Hour // never parks: only a put or the close ends the wait
		got := make(chan int)
		go func() {
			for {
				v, ok := q.get()
				if !ok {
					close(got)
					return
				}
				got <- v
			}
		}()
		for i := range 10 {
			q.put(i, 0)
			if v := <-got; v != i {
				t.Fatalf("got %d, want %d", v, i)
			}
		}
		q.mu.Lock()
		parked := q.getWaiting
		q.mu.Unlock()
		if parked {
			t.Fatal("the consumer parked within its spin")
		}
		q.close()
		if _, ok := <-got; ok {
			t.Fatal("got an item after the close")
		}
	})
	t.Run("parks after the spin", func(t *testing.T) {
		q := newQueue[int](4, 0, 1)
		q.spin = time.Microsecond
		got := make(chan int)
		go func() {
			v, _ := q.get()
			got <- v
		}()
		for { // until the consumer parked: its spin is over
			q.mu.Lock()
			parked := q.getWaiting
			q.mu.Unlock()
			if parked {
				break
			}
			runtime.Gosched()
		}
		q.put(7, 0)
		if v := <-got; v != 7 {
			t.Fatalf("got %d, want 7", v)
		}
	})
}
