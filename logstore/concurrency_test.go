package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"logship/logstore/batch"
)

// TestConcurrentAppendRead runs 16 appenders (each waiting for durability
// after every append), readers at random offsets, a long-polling waiter and
// a Scan, all at once, over segment rolls; run it with -race. It checks
// that every acknowledged batch is readable at once, that readers only see
// whole, valid batches, and that group commit grouped: fewer fsyncs than
// appends.
func TestConcurrentAppendRead(t *testing.T) {
	const writers, perWriter = 16, 40
	hfs := &hookFS{fileSystem: osFS{}}
	s := openFS(t, t.TempDir(), testOpts(16<<10), hfs)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 1)
	syncs0 := hfs.syncs.Load()
	// Give fsync a disk's latency even on tmpfs, so that appends do pile up
	// behind it and the count below cannot depend on the machine.
	hfs.setOnSync(func(string) error { time.Sleep(200 * time.Microsecond); return nil })

	ctx, cancel := context.WithCancel(t.Context())
	var readers sync.WaitGroup
	errc := make(chan error, writers+8)
	for r := range 3 {
		readers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for ctx.Err() == nil {
				end := p.End()
				if end == 0 {
					p.Wait(ctx, 0)
					continue
				}
				off := rng.Int64N(end)
				data, err := p.Read(off, rng.IntN(8<<10))
				if err != nil {
					errc <- err
					return
				}
				after := p.End()
				for first := true; len(data) > 0; first = false {
					n, _ := batch.Size(data)
					h, err := batch.Parse(data[:n])
					if err != nil || h.NextOffset() > after || (first && (h.BaseOffset > off || h.NextOffset() <= off)) {
						errc <- fmt.Errorf("Read(%d): batch [%d, %d), End %d: %v", off, h.BaseOffset, h.NextOffset(), after, err)
						return
					}
					data = data[n:]
				}
			}
		})
	}
	readers.Go(func() { // long poll: every wakeup must be real
		for off := int64(0); ; {
			if err := p.Wait(ctx, off); err != nil {
				return
			}
			if end := p.End(); end <= off {
				errc <- errors.New("Wait returned early")
				return
			} else {
				off = end
			}
		}
	})
	readers.Go(func() {
		if err := p.Scan(func(*batch.Header) error { return nil }); err != nil {
			errc <- err
		}
	})

	var wg sync.WaitGroup
	var appends atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				b := makeBatch(t, testTopic, w*1000+i, 1+i%3, 100)
				h, _ := batch.Parse(b)
				res, err := p.Append(b, &h, nil)
				if err == nil {
					err = p.WaitDurable(res.Next)
				}
				if err != nil {
					errc <- err
					return
				}
				appends.Add(1)
				// Acknowledged, so it must be readable now.
				if got, err := p.Read(res.BaseOffset, 1); err != nil || !bytes.Equal(got, b) {
					errc <- errors.New("acknowledged batch not readable")
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Every writer's batches are there, in its own order.
	last := map[uint64]int{}
	count := 0
	if err := p.Scan(func(h *batch.Header) error {
		w, i := int(h.SourceID/1000), int(h.SourceID%1000)
		if prev, ok := last[uint64(w)]; ok && prev >= i {
			t.Errorf("writer %d: batch %d after %d", w, i, prev)
		}
		last[uint64(w)] = i
		count++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if count != writers*perWriter {
		t.Fatalf("%d batches, want %d", count, writers*perWriter)
	}
	syncs := hfs.syncs.Load() - syncs0
	t.Logf("%d appends, %d fsyncs", appends.Load(), syncs)
	if syncs >= appends.Load() {
		t.Fatalf("%d fsyncs for %d appends: group commit does not group", syncs, appends.Load())
	}
}

// TestGroupCommit makes the grouping deterministic: while the first
// fsync is held, nine more appends arrive and wait; one more fsync must
// cover all of them.
func TestGroupCommit(t *testing.T) {
	hfs := &hookFS{fileSystem: newMemFS()}
	s := openFS(t, "/store", testOpts(1<<20), hfs)
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 0)

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hfs.setOnSync(func(name string) error {
		if strings.HasSuffix(name, logSuffix) {
			once.Do(func() { close(entered); <-release })
		}
		return nil
	})
	syncs0 := hfs.syncs.Load()
	errc := make(chan error, 10)
	appendAndWait := func(i int, appended *sync.WaitGroup) {
		b := makeBatch(t, testTopic, i, 1, 10)
		h, _ := batch.Parse(b)
		res, err := p.Append(b, &h, nil)
		if appended != nil {
			appended.Done()
		}
		if err == nil {
			err = p.WaitDurable(res.Next)
		}
		errc <- err
	}
	go appendAndWait(0, nil)
	<-entered // the leader is inside its fsync
	var appended sync.WaitGroup
	appended.Add(9)
	for i := 1; i < 10; i++ {
		go appendAndWait(i, &appended)
	}
	appended.Wait()
	close(release)
	for range 10 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := hfs.syncs.Load() - syncs0; n > 2 {
		t.Fatalf("%d fsyncs for 10 appends; want at most 2", n)
	}
	if p.End() != 10 {
		t.Fatalf("End() = %d, want 10", p.End())
	}
	if err := p.WaitDurable(11); err == nil {
		t.Fatal("WaitDurable past the written end returned nil")
	}
}

// TestFsyncErrorPoisons: after a failed fsync nothing may be acknowledged,
// and the data that was not synced is not shown to readers.
func TestFsyncErrorPoisons(t *testing.T) {
	hfs := &hookFS{fileSystem: newMemFS()}
	s := openFS(t, "/store", testOpts(1<<20), hfs)
	p := partitionT(t, s, testTopic, 0)
	want := appendMany(t, p, 0, 3)
	hfs.setOnSync(func(string) error { return syscall.EIO })

	b := makeBatch(t, testTopic, 3, 1, 10)
	h, _ := batch.Parse(b)
	res, err := p.Append(b, &h, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitDurable(res.Next)
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("WaitDurable after a failed fsync: %v", err)
	}
	hfs.setOnSync(nil) // even when fsync works again
	if _, err := p.Append(b, &h, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a failed partition: %v", err)
	}
	if err := p.WaitDurable(0); !errors.Is(err, ErrFailed) {
		t.Fatalf("WaitDurable on a failed partition: %v", err)
	}
	checkLog(t, p, want)
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close of a failed store: %v", err)
	}
}

// TestWriteErrorTruncates: a failed write (disk full) is undone and
// refused; the partition goes on.
func TestWriteErrorTruncates(t *testing.T) {
	hfs := &hookFS{fileSystem: newMemFS()}
	s := openFS(t, "/store", testOpts(1<<20), hfs)
	p := partitionT(t, s, testTopic, 0)
	want := appendMany(t, p, 0, 3)
	hfs.setOnWrite(func(name string) error {
		if strings.HasSuffix(name, logSuffix) {
			return syscall.ENOSPC
		}
		return nil
	})
	b := makeBatch(t, testTopic, 3, 1, 10)
	h, _ := batch.Parse(b)
	if _, err := p.Append(b, &h, nil); !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	hfs.setOnWrite(nil)
	want = append(want, appendMany(t, p, 4, 2)...)
	checkLog(t, p, want)
	closeT(t, s)
	s = openFS(t, "/store", testOpts(1<<20), hfs)
	defer closeT(t, s)
	checkLog(t, s.Lookup(testTopic, 0), want)
}

// TestWait checks the long poll for every policy, with a fake clock and
// no sleeps: synctest.Wait tells when every goroutine is blocked.
func TestWait(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := testOpts(1 << 20)
				opts.Fsync = policy
				s := openFS(t, "/store", opts, newMemFS())
				p := partitionT(t, s, testTopic, 0)
				done := make(chan error, 1)
				blocked := func() bool {
					synctest.Wait()
					select {
					case err := <-done:
						t.Fatalf("Wait returned %v", err)
					default:
					}
					return true
				}

				go func() { done <- p.Wait(t.Context(), 0) }()
				blocked()
				b := makeBatch(t, testTopic, 0, 2, 10)
				h, _ := batch.Parse(b)
				res, err := p.Append(b, &h, nil)
				if err != nil {
					t.Fatal(err)
				}
				if policy == FsyncAlways {
					blocked() // written, not durable: not visible yet
					if err := p.WaitDurable(res.Next); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if err := p.Wait(t.Context(), 1); err != nil { // below End: at once
					t.Fatal(err)
				}

				ctx, cancel := context.WithCancel(t.Context())
				go func() { done <- p.Wait(ctx, 2) }()
				blocked()
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait after cancel: %v", err)
				}
				ctx, cancel = context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				if err := p.Wait(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Wait after timeout: %v", err)
				}

				go func() { done <- p.Wait(t.Context(), 2) }()
				blocked()
				closeT(t, s)
				if err := <-done; !errors.Is(err, ErrClosed) {
					t.Fatalf("Wait across Close: %v", err)
				}
			})
		})
	}
}

// TestWaitManyWaiters: waiters on every offset, parked before the appends,
// all wake up.
func TestWaitManyWaiters(t *testing.T) {
	const n = 50
	s := openFS(t, "/store", testOpts(1<<20), newMemFS())
	defer closeT(t, s)
	p := partitionT(t, s, testTopic, 0)
	var wg sync.WaitGroup
	for off := range int64(n) {
		wg.Go(func() {
			if err := p.Wait(t.Context(), off); err != nil {
				t.Error(err)
			}
		})
	}
	for i := range n {
		appendBatch(t, p, makeBatch(t, testTopic, i, 1, 10))
	}
	wg.Wait()
}

// TestIntervalFlusher checks the store's flusher with a fake clock: it
// syncs dirty partitions once per interval, only those, and a failed
// fsync poisons the partition.
func TestIntervalFlusher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hfs := &hookFS{fileSystem: newMemFS()}
		opts := testOpts(1 << 20)
		opts.Fsync, opts.FsyncInterval = FsyncInterval, time.Second
		s := openFS(t, "/store", opts, hfs)
		p := partitionT(t, s, testTopic, 0)
		partitionT(t, s, testTopic, 1) // idle: never synced
		syncs0 := hfs.syncs.Load()
		want := appendMany(t, p, 0, 3) // WaitDurable returns at once
		checkLog(t, p, want)           // and the batches are visible at once
		synctest.Wait()
		if n := hfs.syncs.Load() - syncs0; n != 0 {
			t.Fatalf("%d fsyncs before the interval", n)
		}
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if n := hfs.syncs.Load() - syncs0; n != 1 {
			t.Fatalf("%d fsyncs after one interval, want 1", n)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := hfs.syncs.Load() - syncs0; n != 1 {
			t.Fatalf("%d fsyncs after idle intervals, want 1", n)
		}

		hfs.setOnSync(func(string) error { return syscall.EIO })
		appendMany(t, p, 3, 1)
		time.Sleep(time.Second)
		synctest.Wait()
		b := makeBatch(t, testTopic, 9, 1, 10)
		h, _ := batch.Parse(b)
		if _, err := p.Append(b, &h, nil); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append after a failed interval fsync: %v", err)
		}
		if err := p.WaitDurable(0); !errors.Is(err, ErrFailed) {
			t.Fatalf("WaitDurable after a failed interval fsync: %v", err)
		}
		if err := s.Close(); !errors.Is(err, ErrFailed) {
			t.Fatalf("Close: %v", err)
		}
	})
}
