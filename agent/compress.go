package agent

import (
	"fmt"
	"sync"

	"logship/logstore/batch"
)

// Compressing batches in parallel.
//
// The loop cuts records into the shared batch.Builder; compressing them is
// most of the agent's CPU (zstd), so it is not done on the loop: ship takes
// the Builder's records (batch.Builder.Take), puts them in a compressJob
// and hands the job both to the pool's queue and, in seq order, to the
// session's send channel. A pool of Compressors goroutines (default
// GOMAXPROCS), each with its own batch.Compressor, builds the batches in
// parallel; the session's writer takes jobs from the send channel in the
// order they were shipped and waits for each one's batch before it writes
// it, so batches are still written in seq order on the connection.
//
// Memory stays bounded: the queue is unbuffered, so the loop waits when
// every compressor is busy (backpressure); a job's raw records go back to
// a small free list as soon as its batch is built, so the raw bytes alive
// are at most those of the Builder and of the jobs being compressed;
// built batches in flight are bounded by the window as before. Buffers and jobs are reused: shipping a batch allocates
// nothing once the pools are warm.
//
// The pool belongs to the Agent: Run starts it before the connection and
// stops it (close the queue, wait) after the connection's goroutines are
// gone.

// compressJob is one batch on its way from the loop through a compressor
// to the session's writer. The loop fills it; one compressor builds it and
// then sends on ready; the writer receives from ready before it uses data,
// which orders the compressor's writes before the writer's reads. The
// writer then recycles it; a job the writer never takes (its session
// ended) is left to the garbage collector.
type compressJob struct {
	sess  *session
	seq   uint64
	recs  batch.Records
	meta  batch.Meta
	data  *[]byte       // the built batch
	ready chan struct{} // capacity 1: one send per use
}

// compressPool is the agent's compressors.
type compressPool struct {
	comps []*batch.Compressor
	queue chan *compressJob
	wg    sync.WaitGroup
	// rawFree holds spare raw buffers for the Builder: big enough for
	// every raw buffer alive (Builder, compressors), never blocks.
	rawFree chan []byte
	rawCap  int       // capacity of a new raw buffer
	jobs    sync.Pool // *compressJob
}

// newCompressPool makes n compressors (not started) for batches of about
// batchBytes raw bytes.
func newCompressPool(c batch.Compression, n, batchBytes int) (*compressPool, error) {
	// The queue is unbuffered: a job waits in the loop, not in the
	// queue, until a compressor is free, so at most 1+n raw batches are
	// alive (the Builder's and one per compressor), not 1+2n. Reading
	// and cutting are several times faster than compressing, so a
	// queued job would only hold memory, not keep a compressor busy.
	p := &compressPool{
		queue:   make(chan *compressJob),
		rawFree: make(chan []byte, n+2),
		rawCap:  batchBytes + batchBytes/8 + 4096,
	}
	for range n {
		comp, err := batch.NewCompressorSized(c, batchBytes)
		if err != nil {
			p.close()
			return nil, err
		}
		p.comps = append(p.comps, comp)
	}
	return p, nil
}

// start starts the compressors; stop stops them.
func (p *compressPool) start(a *Agent) {
	p.wg.Add(len(p.comps))
	for _, comp := range p.comps {
		go p.run(a, comp)
	}
}

// stop ends the compressors once the queue is drained and waits for them.
// Nothing may be queued after stop.
func (p *compressPool) stop() {
	close(p.queue)
	p.wg.Wait()
}

// close releases the compressors' encoders; after stop, or without start.
func (p *compressPool) close() {
	for _, c := range p.comps {
		c.Close()
	}
}

// run is one compressor goroutine.
func (p *compressPool) run(a *Agent, comp *batch.Compressor) {
	defer p.wg.Done()
	for j := range p.queue {
		select {
		case <-j.sess.done:
			// The session is gone: nobody will write this batch.
		default:
			bp := a.getBuf()
			out, err := comp.Build((*bp)[:0], &j.recs, j.meta)
			if err != nil {
				// Sizes are bounded by validated options: this cannot happen.
				panic(fmt.Sprintf("BUG: agent: build batch: %v", err))
			}
			*bp = out
			j.data = bp
		}
		p.putRaw(j.recs.Raw)
		j.recs.Raw = nil
		j.ready <- struct{}{}
	}
}

// getJob returns a job with its ready channel empty. Loop goroutine.
func (p *compressPool) getJob() *compressJob {
	if j, ok := p.jobs.Get().(*compressJob); ok {
		return j
	}
	return &compressJob{ready: make(chan struct{}, 1)}
}

// putJob recycles a job whose ready the caller received. Writer goroutine.
func (p *compressPool) putJob(j *compressJob) {
	*j = compressJob{ready: j.ready}
	p.jobs.Put(j)
}

// getRaw returns a spare raw buffer, or a new one sized for a batch and
// its last record: grown by appending from nothing, each raw batch would
// leave about as much garbage again behind it.
func (p *compressPool) getRaw() []byte {
	select {
	case b := <-p.rawFree:
		return b
	default:
		return make([]byte, 0, p.rawCap)
	}
}

// putRaw keeps a raw buffer for the Builder, unless the free list is full
// or the buffer is outsized (a batch of a long line).
func (p *compressPool) putRaw(b []byte) {
	if b == nil || cap(b) > 2*p.rawCap {
		return
	}
	select {
	case p.rawFree <- b[:0]:
	default:
	}
}

// ship hands the Builder's records, covering [start, end) of s, to the
// compressors, puts the batch in flight and hands it to the connection's
// writer, which writes it once it is built. Loop goroutine.
func (a *Agent) ship(s *source, start, end int64) {
	lines := a.builder.Count()
	path := s.path
	if len(path) > maxPathLen {
		path = path[len(path)-maxPathLen:]
	}
	p := a.pool
	j := p.getJob()
	j.sess = a.sess
	j.recs = a.builder.Take(p.getRaw())
	j.meta = batch.Meta{
		Agent: a.opts.ID, Topic: s.topic, Path: path,
		SourceID: s.id, RangeStart: start, RangeEnd: end,
	}
	a.seq++
	j.seq = a.seq
	a.flights.push(flight{seq: a.seq, src: s, gen: s.gen, start: start, end: end, size: len(j.recs.Raw)})
	a.inflightBytes += end - start
	s.inflight++
	s.readPos = end
	s.sentHigh = max(s.sentHigh, end)
	s.shipped = true
	// Waits while the compressors are behind: they never wait for the
	// loop, so this always ends.
	p.queue <- j
	// Never blocks: the channel holds maxInFlight batches and at most
	// that many are in flight.
	a.sess.send <- j
	a.lines.Add(int64(lines))
	a.rawBytes.Add(end - start)
	s.stats.read.Add(end - start)
	a.batches.Add(1)
}
