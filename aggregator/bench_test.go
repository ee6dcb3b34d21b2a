package aggregator

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// benchBatches returns n zstd batches of about 256 KiB of log lines each,
// for conns sources (one per connection), as Produce frames: what agents
// send. It returns the frames by connection and the raw bytes in all.
//
// Compressing is most of the setup, so only benchTemplates batches are
// built; each frame is a copy of one of them with its agent id, source id
// and byte range patched and its body CRC computed again (see doc.go of
// logstore/batch). The aggregator never looks inside the payload, so
// repeated payloads change nothing it does, and a benchmark can afford
// a timed part long enough to measure (the setup takes tens of
// milliseconds per 1000 batches, not a second).
func benchBatches(b *testing.B, conns, n int) (frames [][][]byte, raw int64) {
	b.Helper()
	bld, err := batch.NewBuilder(batch.Zstd)
	if err != nil {
		b.Fatal(err)
	}
	defer bld.Close()
	type template struct {
		b   []byte
		raw int64
	}
	var templates []template
	var line []byte
	for i := range min(n, benchTemplates) {
		size := 0
		for j := 0; size < 256<<10; j++ {
			line = benchLine(line[:0], 0, i, j)
			bld.Add(int64(j), line)
			size += len(line) + 1
		}
		out, err := bld.Build(nil, batch.Meta{Agent: "host-000", Topic: "app", Path: "/var/log/app.log"})
		if err != nil {
			b.Fatal(err)
		}
		templates = append(templates, template{out, int64(size)})
	}
	frames = make([][][]byte, conns)
	ranges := make([]int64, conns)
	for i := range n {
		c := i % conns
		seq := len(frames[c])
		t := templates[i%len(templates)]
		f := binary.BigEndian.AppendUint32(make([]byte, 0, 5+wire.ProduceHeaderSize+len(t.b)), uint32(1+wire.ProduceHeaderSize+len(t.b)))
		f = append(f, byte(wire.TypeProduce))
		f = wire.EncodeProduceHeader(f, uint64(seq+1))
		f = append(f, t.b...)
		bt := f[5+wire.ProduceHeaderSize:]
		// Offsets of the body's fields: batch/doc.go, layout version 1.
		binary.BigEndian.PutUint64(bt[51:], uint64(c))               // source id
		binary.BigEndian.PutUint64(bt[59:], uint64(ranges[c]))       // range start
		binary.BigEndian.PutUint64(bt[67:], uint64(ranges[c]+t.raw)) // range end
		copy(bt[77:], fmt.Sprintf("host-%03d", c))                   // agent id, after its length
		binary.BigEndian.PutUint32(bt[25:], batch.Checksum(bt[29:])) // body CRC
		if h, err := batch.Parse(bt); err != nil || h.Agent != fmt.Sprintf("host-%03d", c) || h.RangeStart != ranges[c] {
			b.Fatalf("BUG: patched batch: %v %+v", err, h)
		}
		ranges[c] += t.raw
		raw += t.raw
		frames[c] = append(frames[c], f)
	}
	return frames, raw
}

// benchTemplates is how many distinct batches benchBatches compresses.
const benchTemplates = 64

// benchLine appends line j of batch i of connection c: the bytes of
//
//	fmt.Sprintf("2026-11-22T06:51:%02d.%06dZ INFO host-%03d request_id=%08x path=/api/v1/items/%d status=200 bytes=%d took=%dms",
//		j%60, j*37%1000000, c, i*7919+j, j%5000, j*13%100000, j%250)
//
// built without fmt, which took half of the benchmark's setup.
func benchLine(b []byte, c, i, j int) []byte {
	pad := func(b []byte, n, width, base int) []byte {
		var d [20]byte
		s := strconv.AppendInt(d[:0], int64(n), base)
		for k := len(s); k < width; k++ {
			b = append(b, '0')
		}
		return append(b, s...)
	}
	b = append(b, "2026-11-22T06:51:"...)
	b = pad(b, j%60, 2, 10)
	b = append(b, '.')
	b = pad(b, j*37%1000000, 6, 10)
	b = append(b, "Z INFO host-"...)
	b = pad(b, c, 3, 10)
	b = append(b, " request_id="...)
	b = pad(b, i*7919+j, 8, 16)
	b = append(b, " path=/api/v1/items/"...)
	b = strconv.AppendInt(b, int64(j%5000), 10)
	b = append(b, " status=200 bytes="...)
	b = strconv.AppendInt(b, int64(j*13%100000), 10)
	b = append(b, " took="...)
	b = strconv.AppendInt(b, int64(j%250), 10)
	return append(b, "ms"...)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds the benchmark's throughput metrics.
func report(b *testing.B, raw, wireBytes int64, took, cpu time.Duration) {
	b.ReportMetric(float64(raw)/took.Seconds()/1e6, "raw-MB/s")
	b.ReportMetric(float64(wireBytes)/took.Seconds()/1e6, "wire-MB/s")
	b.ReportMetric(cpu.Seconds()/(float64(raw)/1e9), "cpu-s/raw-GB")
}

// BenchmarkIngest: agents on 1, 8 and 64 connections send pre-built
// batches (zstd, about 256 KiB of log lines each) as fast as the
// aggregator acks them, with a window of 64 batches per connection, next
// to the logstore appending the same batches by itself (the baseline the
// aggregator is held to). One op is one batch. cpu-s/raw-GB counts the
// whole process, senders included (they only write prebuilt bytes, one
// write per frame, and read acks through a buffer). The baseline parses
// (CRC-checks) each batch in the timed loop, as the aggregator must; both
// collect the setup's garbage before the timer starts. At 5000x the timed
// part is about 0.1 s (160 MB of batches); much longer runs measure the
// page cache's writeback more than the aggregator.
//
//	go test -run '^$' -bench BenchmarkIngest -benchtime 5000x -count 6 ./aggregator/
func BenchmarkIngest(b *testing.B) {
	for _, fsync := range []logstore.FsyncPolicy{logstore.FsyncNever, logstore.FsyncAlways} {
		b.Run("fsync="+fsync.String()+"/logstore", func(b *testing.B) {
			frames, raw := benchBatches(b, 8, b.N)
			store, err := logstore.Open(filepath.Join(b.TempDir(), "log"), logstore.Options{Fsync: fsync})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			var wireBytes int64
			type item struct {
				b []byte
				h batch.Header
			}
			var items []item
			for i := range len(frames[0]) {
				for c := range frames {
					if i < len(frames[c]) {
						items = append(items, item{b: frames[c][i][5+wire.ProduceHeaderSize:]})
						wireBytes += int64(len(frames[c][i]))
					}
				}
			}
			accept := func(*batch.Header) (bool, error) { return true, nil }
			b.SetBytes(raw / int64(b.N))
			runtime.GC() // not the setup's garbage in the timed part
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := range items {
				it := &items[i]
				// Parsing (and so the CRC check) is timed: Append needs a
				// checked header, so any caller of the log pays for it.
				it.h, err = batch.Parse(it.b)
				if err != nil {
					b.Fatal(err)
				}
				p, err := store.Partition("app", hashPartition(sourceKey{it.h.Agent, it.h.SourceID}, 4))
				if err != nil {
					b.Fatal(err)
				}
				res, err := p.Append(it.b, &it.h, accept)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.WaitDurable(res.Next); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report(b, raw, wireBytes, time.Since(start), cpuTime()-cpu0)
		})
		for _, conns := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("fsync=%s/conns=%d", fsync, conns), func(b *testing.B) {
				frames, raw := benchBatches(b, conns, max(b.N, conns))
				ts := start(b, b.TempDir(), func(o *Options) { o.Fsync = fsync; o.Logger = nil })
				var wireBytes int64
				for _, fs := range frames {
					for _, f := range fs {
						wireBytes += int64(len(f))
					}
				}
				ncs := make([]net.Conn, conns)
				for i := range ncs {
					ncs[i] = dialRaw(b, ts.Addr(), fmt.Sprintf("host-%03d", i)).nc
				}
				b.SetBytes(raw / int64(max(b.N, conns)))
				runtime.GC() // not the setup's garbage in the timed part
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				var wg sync.WaitGroup
				for i, nc := range ncs {
					const window = 64
					credit := make(chan struct{}, window)
					wg.Add(2)
					go func() { // the agent's writer
						defer wg.Done()
						for _, f := range frames[i] {
							credit <- struct{}{}
							if _, err := nc.Write(f); err != nil {
								b.Error(err)
								return
							}
						}
					}()
					go func() { // the agent's reader
						defer wg.Done()
						// Buffered: one read syscall for many acks, as
						// the agent's wire.Conn does, not two per ack.
						r := bufio.NewReaderSize(nc, 16<<10)
						buf := new(ackBuf)
						for range frames[i] {
							if err := readOKAck(r, buf); err != nil {
								if err != io.EOF {
									b.Error(err)
								}
								return
							}
							<-credit
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				report(b, raw, wireBytes, time.Since(start), cpuTime()-cpu0)
				if st := ts.Stats(); st.Appended != int64(max(b.N, conns)) {
					b.Fatalf("%d appended of %d", st.Appended, max(b.N, conns))
				}
				for _, nc := range ncs {
					nc.Close()
				}
			})
		}
	}
}

// readOKAck reads one frame from r, which must be a ProduceAck that is not
// Failed, through buf: a buffer of the caller's, so that reading acks
// allocates nothing in the benchmark's timed part (an array of its own
// would escape to the heap through io.ReadFull, 0.5 KB per batch).
func readOKAck(r io.Reader, buf *ackBuf) error {
	hdr := buf[:5]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return err
	}
	p := buf[5:]
	n := int(binary.BigEndian.Uint32(hdr[:4])) - 1
	if n < 0 || n > len(p) || wire.Type(hdr[4]) != wire.TypeProduceAck {
		return fmt.Errorf("frame %s of %d bytes", wire.Type(hdr[4]), n)
	}
	if _, err := io.ReadFull(r, p[:n]); err != nil {
		return err
	}
	var ack wire.ProduceAck
	if err := ack.Decode(p[:n]); err != nil {
		return err
	}
	if ack.Status == wire.AckFailed {
		return fmt.Errorf("failed ack %+v", ack)
	}
	return nil
}

// ackBuf holds one ack frame: its header and up to 512 bytes of payload.
type ackBuf [5 + 512]byte
