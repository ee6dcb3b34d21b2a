package logstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"logship/logstore/batch"
)

// TestPowerLoss appends from several goroutines over segment rolls and
// cuts the power at a random moment while they run: the file system keeps
// only what was fsynced (plus, at random, part or zeros of what was not).
// After reopening, every batch whose WaitDurable returned before the cut
// must be there, byte for byte, and the log must be whole and appendable.
//
// With FsyncNever nothing is promised, except that the store still opens:
// rolls fsync, so only the last segment can be torn.
func TestPowerLoss(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncNever} {
		for seed := range uint64(12) {
			t.Run(fmt.Sprintf("%v/seed=%d", policy, seed), func(t *testing.T) {
				powerLoss(t, policy, seed)
			})
		}
	}
}

func powerLoss(t *testing.T, policy FsyncPolicy, seed uint64) {
	const writers, perWriter = 6, 30
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := newMemFS()
	opts := testOpts(2048)
	opts.Fsync = policy
	s := openFS(t, "/store", opts, fs)
	p := partitionT(t, s, testTopic, 0)

	var (
		mu      sync.Mutex
		acked   = map[int64][]byte{} // base offset -> batch, once WaitDurable returned
		crashed *memFS
		ackedAt map[int64][]byte // acked when the power went
	)
	cutAfter := 1 + rng.IntN(writers*perWriter-1)
	cut := make(chan struct{})
	var once sync.Once
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				b := makeBatch(t, testTopic, w*1000+i, 1+i%3, 40)
				h, _ := batch.Parse(b)
				res, err := p.Append(b, &h, nil)
				if err == nil {
					err = p.WaitDurable(res.Next)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[res.BaseOffset] = b
				mu.Unlock()
				if n.Add(1) == int64(cutAfter) {
					once.Do(func() { close(cut) })
				}
			}
		})
	}
	// Cut the power while the writers are still going.
	<-cut
	mu.Lock()
	crashed = fs.crash(rng)
	ackedAt = make(map[int64][]byte, len(acked))
	for k, v := range acked {
		ackedAt[k] = v
	}
	mu.Unlock()
	wg.Wait()
	closeT(t, s)

	s = openFS(t, "/store", opts, crashed)
	defer closeT(t, s)
	p = s.Lookup(testTopic, 0)
	if p == nil {
		t.Fatal("partition lost")
	}
	var got []stored
	if err := p.Scan(func(h *batch.Header) error {
		got = append(got, stored{base: h.BaseOffset, count: h.Count})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		data, err := p.Read(got[i].base, 1)
		if err != nil {
			t.Fatal(err)
		}
		got[i].data = data
	}
	checkLog(t, p, got)
	if policy == FsyncAlways {
		for base, b := range ackedAt {
			data, err := p.Read(base, 1)
			if err != nil || !bytes.Equal(data, b) {
				t.Fatalf("acknowledged batch at %d lost (%v); %d of %d kept, End %d", base, err, len(got), len(acked), p.End())
			}
		}
	}
	t.Logf("cut after %d acks: %d acknowledged then, %d batches kept", cutAfter, len(ackedAt), len(got))
	more := appendBatch(t, p, makeBatch(t, testTopic, 99999, 1, 10))
	checkLog(t, p, append(got, more))
}
