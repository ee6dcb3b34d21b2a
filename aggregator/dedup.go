package aggregator

import (
	"log/slog"
	"sync"

	"logship/internal/wire"
	"logship/logstore"
	"logship/logstore/batch"
)

// sourceKey names a source within a topic: the agent id from the batch
// header and the agent's source id.
type sourceKey struct {
	agent  string
	source uint64
}

// sourceState is where a source lives and where its stored data ends.
type sourceState struct {
	partition int
	storedEnd int64 // range end of the source's last stored batch
}

// dedup is the exactly-once state (decision 2 of DESIGN.md): for every
// topic, every source's partition and stored end. It is rebuilt from the
// log at startup and updated after every append. Safe for concurrent use.
type dedup struct {
	partitions int // for sources seen for the first time

	mu     sync.Mutex // guards topics
	topics map[string]*topicState
}

// topicState is the dedup state of one topic.
//
// Lock order: an append lock (locks[p]) is taken first, then mu. mu is
// only ever held for map operations. The append lock of a partition is held
// from the dedup decision through the write to the table update, so that two
// connections sending the same source (an agent reconnecting while its old
// connection still drains) are decided one after the other, each on the
// state the other left.
type topicState struct {
	mu      sync.Mutex
	sources map[sourceKey]sourceState
	locks   map[int]*sync.Mutex
}

func newDedup(partitions int) *dedup {
	return &dedup{partitions: partitions, topics: make(map[string]*topicState)}
}

// topic returns the state of a topic, creating it.
func (d *dedup) topic(name string) *topicState {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.topics[name]
	if t == nil {
		t = &topicState{sources: make(map[sourceKey]sourceState), locks: make(map[int]*sync.Mutex)}
		d.topics[name] = t
	}
	return t
}

// partitionFor returns the partition of a source: the one it is stored in
// when known, else its hash. A source is only ever stored in the partition
// this returns, and an entry, once made, never changes partition: so the
// answer is stable even when it is read before the append lock is taken,
// and even when the configured number of partitions changes.
func (t *topicState) partitionFor(k sourceKey, n int) int {
	t.mu.Lock()
	st, ok := t.sources[k]
	t.mu.Unlock()
	if ok {
		return st.partition
	}
	return hashPartition(k, n)
}

// appendLock returns the append lock of partition id.
func (t *topicState) appendLock(id int) *sync.Mutex {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.locks[id]
	if l == nil {
		l = new(sync.Mutex)
		t.locks[id] = l
	}
	return l
}

func (t *topicState) get(k sourceKey) (sourceState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sources[k]
	return st, ok
}

func (t *topicState) set(k sourceKey, st sourceState) {
	t.mu.Lock()
	t.sources[k] = st
	t.mu.Unlock()
}

// hashPartition is FNV-1a over the agent id, a zero byte and the source id
// (big-endian), modulo n. Written out so that it does not allocate.
func hashPartition(k sourceKey, n int) int {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for i := 0; i < len(k.agent); i++ {
		h = (h ^ uint64(k.agent[i])) * prime64
	}
	h = (h ^ 0) * prime64
	for i := 56; i >= 0; i -= 8 {
		h = (h ^ (k.source >> i & 0xff)) * prime64
	}
	return int(h % uint64(n))
}

// decision is the outcome of the dedup check for one batch.
type decision struct {
	status    wire.AckStatus // AckAppended means: write it
	storedEnd int64          // the source's stored end before this batch (0 for a new source)
	known     bool           // the source had stored data
	gap       bool           // written although RangeStart > storedEnd
}

// decideOn applies the dedup rules (see the package documentation) to a
// batch of a source whose state is st (ok: it has one). resyncing says
// whether this connection was told to resync the source and has not
// resumed it yet. The caller holds the append lock of the source's
// partition, and passes the state the batches before this one leave.
func decideOn(st sourceState, ok bool, h *batch.Header, resyncing bool) decision {
	d := decision{storedEnd: st.storedEnd, known: ok}
	switch {
	case !ok:
		d.status = wire.AckAppended
	case h.RangeEnd <= st.storedEnd:
		// Checked before the exact match so that a batch with an empty
		// range at the stored end is never stored twice.
		d.status = wire.AckDuplicate
	case h.RangeStart == st.storedEnd:
		d.status = wire.AckAppended
	case h.RangeStart < st.storedEnd:
		d.status = wire.AckResync
	case resyncing:
		// A gap, but this connection was told to resync the source: a
		// stale batch that was in flight when the agent got the Resync.
		d.status = wire.AckResync
	default:
		// A gap on a connection that never heard of a Resync for the
		// source: the agent skipped bytes on purpose (a file truncated or
		// dropped under retention) or failed over from another
		// aggregator. Store it; the caller logs the gap.
		d.status = wire.AckAppended
		d.gap = true
	}
	return d
}

// rebuildDedup returns the dedup state the log holds and the number of
// sources in it, from each partition's source table (logstore's
// Partition.Sources, which Open rebuilt from a snapshot and the batches
// after it: no scan of the log). A source found in two partitions (which
// logship never does by itself) keeps the one with the higher stored end
// (the lower partition id on a tie), with a warning.
func rebuildDedup(store *logstore.Store, partitions int, log *slog.Logger) (*dedup, int) {
	d := newDedup(partitions)
	n := 0
	for _, p := range store.Partitions() { // by topic, then id
		t := d.topic(p.Topic())
		id := p.ID()
		for k, src := range p.Sources() {
			key := sourceKey{agent: k.Agent, source: k.Source}
			st, ok := t.sources[key]
			if ok {
				if src.RangeEnd <= st.storedEnd {
					continue
				}
				log.Warn("source stored in two partitions; keeping the one that goes further",
					"topic", p.Topic(), "agent", k.Agent, "source", k.Source, "partition", id, "other_partition", st.partition)
			} else {
				n++
			}
			t.sources[key] = sourceState{partition: id, storedEnd: src.RangeEnd}
		}
	}
	return d, n
}
