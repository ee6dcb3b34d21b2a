package aggregator

import (
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"

	"logship/internal/wire"
)

// TestGatherFragmentedStream: a stream of batches of every size class
// (small, at smallFrame, large) and heartbeats for several sources and
// partitions, written in random cuts, is answered in order, each batch
// appended once, in both modes; the gathered count is 0 at the end.
func TestGatherFragmentedStream(t *testing.T) {
	for _, mode := range agentModes {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/%d", mode.name, seed), func(t *testing.T) {
				ts := start(t, t.TempDir(), func(o *Options) { o.Partitions = 3 })
				openIdle(t, ts.Addr(), mode.idle, mode.idle == 0)
				rng := rand.New(rand.NewPCG(seed, 11))
				a := dialAgent(t, ts.Addr(), "web-1")
				type want struct {
					hb    bool
					seq   uint64
					nonce uint64
				}
				var out []byte
				var wants []want
				ends := map[uint64]int64{}
				sizes := []int{300, 10 << 10, 16<<10 - 200, 16 << 10, 20 << 10, 70 << 10}
				seq := uint64(0)
				for k := range 300 {
					if rng.IntN(10) == 0 {
						out = append(out, heartbeatFrame(t, uint64(k))...)
						wants = append(wants, want{hb: true, nonce: uint64(k)})
						continue
					}
					id := uint64(rng.IntN(5))
					seq++
					s := src{"web-1", "app", id}
					out = append(out, produceFrame(t, s, seq, ends[id], ends[id]+10, sizes[rng.IntN(len(sizes))])...)
					ends[id] += 10
					wants = append(wants, want{seq: seq})
				}
				werr := make(chan error, 1)
				go func() {
					nc := a.c.NetConn()
					rest := out
					for len(rest) > 0 {
						n := min(len(rest), 1+rng.IntN(100<<10))
						if rng.IntN(4) == 0 {
							n = min(len(rest), 1+rng.IntN(8))
						}
						if _, err := nc.Write(rest[:n]); err != nil {
							werr <- err
							return
						}
						rest = rest[n:]
						if rng.IntN(4) == 0 {
							runtime.Gosched()
						}
					}
					werr <- nc.(*net.TCPConn).CloseWrite()
				}()
				for i, w := range wants {
					typ, p, err := a.c.ReadFrame()
					if err != nil {
						t.Fatalf("answer %d: %v", i, err)
					}
					switch {
					case w.hb:
						var hb wire.Heartbeat
						if typ != wire.TypeHeartbeat || hb.Decode(p) != nil || hb.Nonce != w.nonce {
							t.Fatalf("answer %d: %s, want heartbeat %d", i, typ, w.nonce)
						}
					default:
						var ack wire.ProduceAck
						if typ != wire.TypeProduceAck || ack.Decode(p) != nil || ack.Seq != w.seq || ack.Status != wire.AckAppended {
							t.Fatalf("answer %d: %s %+v, want ack of seq %d", i, typ, ack, w.seq)
						}
					}
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				if _, _, err := a.c.ReadFrame(); err == nil {
					t.Fatal("more answers")
				}
				waitUntil(t, func() bool { return ts.Stats().OpenAgents == int64(mode.idle) })
				if g := ts.Server.gathered.Load(); g != 0 {
					t.Fatalf("gathered %d", g)
				}
				if st := ts.Stats(); st.Appended != int64(seq) {
					t.Fatalf("appended %d, want %d", st.Appended, seq)
				}
			})
		}
	}
}
