package aggregator

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"logship/internal/statefile"
	"logship/internal/wire"
	"logship/logstore/batch"
)

// Offsets file format: do not change. A new body schema gets a new version.
const (
	offsetsKind    = "offsets"
	offsetsVersion = 2 // version 1 had no epochs; it is still read
	offsetsSuffix  = ".offsets"
)

// committedOffset is one partition's committed offset and its reset epoch.
type committedOffset struct {
	Offset int64  `json:"offset"`
	Epoch  uint64 `json:"epoch"`
}

// errCommitReset is wrapped by the errors of commits made under an epoch
// that is not the stored one: an operator reset the offset meanwhile.
var errCommitReset = errors.New("aggregator: offset was reset")

// errInvalidCommit is wrapped by the errors of commits refused for what
// they ask (as opposed to a failure to store them).
var errInvalidCommit = errors.New("aggregator: invalid offset commit")

// offsetStore holds the committed offsets of every sink, in memory and in
// one state file per sink. Offsets never expire. Safe for concurrent use.
type offsetStore struct {
	dir string

	mu    sync.Mutex // guards sinks
	sinks map[string]*sinkOffsets
}

// sinkOffsets are one sink's committed offsets.
type sinkOffsets struct {
	// mu serialises the sink's commits, file write included, and guards
	// topics: a reader never sees an offset that is not durable yet.
	mu     sync.Mutex
	topics map[string]map[uint32]committedOffset
}

// loadOffsets reads every DataDir/offsets/<sink>.offsets file. A damaged
// file stops the server with an error naming it: starting without a sink's
// offsets would silently rewind or skip that sink. Temporary files left by
// an interrupted write are removed.
func loadOffsets(dir string, log *slog.Logger) (*offsetStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	o := &offsetStore{dir: dir, sinks: make(map[string]*sinkOffsets)}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		if isOffsetsTemp(name) {
			if err := os.Remove(path); err != nil {
				log.Warn("cannot remove temporary offsets file", "path", path, "err", err)
			}
			continue
		}
		sink, ok := strings.CutSuffix(name, offsetsSuffix)
		if !ok || !batch.ValidName(sink) || !e.Type().IsRegular() {
			log.Warn("ignoring unexpected file among committed offsets", "path", path)
			continue
		}
		v, body, err := statefile.Read(path, offsetsKind)
		if err == nil && (v < 1 || v > offsetsVersion) {
			err = fmt.Errorf("%s: offsets version %d, this aggregator reads 1 to %d", path, v, offsetsVersion)
		}
		if err == nil {
			var topics map[string]map[uint32]committedOffset
			if topics, err = decodeOffsets(v, body); err != nil {
				err = &statefile.CorruptError{Path: path, Reason: err.Error()}
			}
			o.sinks[sink] = &sinkOffsets{topics: topics}
		}
		if err != nil {
			return nil, fmt.Errorf("aggregator: committed offsets of sink %q: %w (move the file aside to start without them; the sink then starts per its reset policy)", sink, err)
		}
	}
	return o, nil
}

// isOffsetsTemp reports whether name is a temporary file of
// statefile.WriteAtomic for an offsets file: ".<sink>.offsets.tmp-<digits>".
func isOffsetsTemp(name string) bool {
	i := strings.LastIndex(name, ".tmp-")
	if !strings.HasPrefix(name, ".") || i < 0 || !strings.HasSuffix(name[:i], offsetsSuffix) {
		return false
	}
	_, err := strconv.ParseUint(name[i+len(".tmp-"):], 10, 64)
	return err == nil
}

// decodeOffsets parses and checks an offsets body of version v.
func decodeOffsets(v int, body []byte) (map[string]map[uint32]committedOffset, error) {
	var raw map[string]map[string]committedOffset
	if v == 1 {
		var v1 map[string]map[string]int64
		if err := json.Unmarshal(body, &v1); err != nil {
			return nil, err
		}
		raw = make(map[string]map[string]committedOffset, len(v1))
		for topic, parts := range v1 {
			raw[topic] = make(map[string]committedOffset, len(parts))
			for p, off := range parts {
				raw[topic][p] = committedOffset{Offset: off}
			}
		}
	} else if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]map[uint32]committedOffset, len(raw))
	for topic, parts := range raw {
		if err := batch.CheckName("topic", topic); err != nil {
			return nil, err
		}
		m := make(map[uint32]committedOffset, len(parts))
		for ps, co := range parts {
			off := co.Offset
			p, err := strconv.ParseUint(ps, 10, 32)
			if err != nil || strconv.FormatUint(p, 10) != ps {
				return nil, fmt.Errorf("topic %q: bad partition %q", topic, ps)
			}
			if off < 0 {
				return nil, fmt.Errorf("topic %q partition %d: negative offset %d", topic, p, off)
			}
			m[uint32(p)] = co
		}
		out[topic] = m
	}
	return out, nil
}

// encodeOffsets is the inverse of decodeOffsets for the current version.
// encoding/json sorts map keys, so equal offsets give equal bytes.
func encodeOffsets(topics map[string]map[uint32]committedOffset) []byte {
	raw := make(map[string]map[string]committedOffset, len(topics))
	for topic, parts := range topics {
		m := make(map[string]committedOffset, len(parts))
		for p, co := range parts {
			m[strconv.FormatUint(uint64(p), 10)] = co
		}
		raw[topic] = m
	}
	b, err := json.Marshal(raw)
	if err != nil {
		panic("BUG: aggregator: marshal offsets: " + err.Error())
	}
	return b
}

func (o *offsetStore) sink(name string, create bool) *sinkOffsets {
	o.mu.Lock()
	defer o.mu.Unlock()
	so := o.sinks[name]
	if so == nil && create {
		so = &sinkOffsets{topics: make(map[string]map[uint32]committedOffset)}
		o.sinks[name] = so
	}
	return so
}

// commit stores a sink's next offset for one partition, durably, before it
// returns, if epoch is the partition's stored epoch (0 when it has none).
// Errors for invalid requests wrap errInvalidCommit, and those for a stale
// epoch errCommitReset.
func (o *offsetStore) commit(sink, topic string, partition uint32, offset int64, epoch uint64) error {
	return o.store(sink, topic, partition, offset, func(old committedOffset, had bool) (uint64, error) {
		if old.Epoch != epoch {
			return 0, fmt.Errorf("%w: commit of offset %d under epoch %d, but an operator reset it to epoch %d", errCommitReset, offset, epoch, old.Epoch)
		}
		return epoch, nil
	})
}

// reset stores an operator's new offset for a sink's partition under the
// next epoch, and returns that epoch.
func (o *offsetStore) reset(sink, topic string, partition uint32, offset int64) (uint64, error) {
	var epoch uint64
	err := o.store(sink, topic, partition, offset, func(old committedOffset, had bool) (uint64, error) {
		epoch = old.Epoch + 1
		return epoch, nil
	})
	return epoch, err
}

// store checks names and offset, asks next for the new epoch given the
// stored entry, and stores the entry durably.
func (o *offsetStore) store(sink, topic string, partition uint32, offset int64, next func(old committedOffset, had bool) (uint64, error)) error {
	if err := batch.CheckName("sink name", sink); err != nil {
		return fmt.Errorf("%w: %v", errInvalidCommit, err)
	}
	if err := batch.CheckName("topic", topic); err != nil {
		return fmt.Errorf("%w: %v", errInvalidCommit, err)
	}
	if offset < 0 {
		return fmt.Errorf("%w: negative offset %d", errInvalidCommit, offset)
	}
	so := o.sink(sink, true)
	so.mu.Lock()
	defer so.mu.Unlock()
	parts := so.topics[topic]
	old, had := parts[partition]
	epoch, err := next(old, had)
	if err != nil {
		return err
	}
	co := committedOffset{Offset: offset, Epoch: epoch}
	if had && old == co {
		return nil // already durable
	}
	if parts == nil {
		parts = make(map[uint32]committedOffset)
		so.topics[topic] = parts
	}
	parts[partition] = co
	err = statefile.Write(filepath.Join(o.dir, sink+offsetsSuffix), offsetsKind, offsetsVersion, encodeOffsets(so.topics))
	if err != nil {
		// Undo: memory must never hold an offset that is not on disk.
		if had {
			parts[partition] = old
		} else {
			delete(parts, partition)
		}
		return fmt.Errorf("aggregator: store offsets of sink %q: %w", sink, err)
	}
	return nil
}

// committed returns a sink's committed offsets in a topic, by partition.
func (o *offsetStore) committed(sink, topic string) []wire.PartitionOffset {
	so := o.sink(sink, false)
	if so == nil {
		return nil
	}
	so.mu.Lock()
	defer so.mu.Unlock()
	parts := so.topics[topic]
	out := make([]wire.PartitionOffset, 0, len(parts))
	for p, co := range parts {
		out = append(out, wire.PartitionOffset{Partition: p, Offset: co.Offset, Epoch: co.Epoch})
	}
	slices.SortFunc(out, func(a, b wire.PartitionOffset) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}

// sinkCommit is one committed offset of one sink, for status.
type sinkCommit struct {
	sink, topic string
	partition   uint32
	committedOffset
}

// all returns every sink's committed offsets, sorted by sink, topic and
// partition.
func (o *offsetStore) all() []sinkCommit {
	o.mu.Lock()
	names := slices.Sorted(maps.Keys(o.sinks))
	sinks := make([]*sinkOffsets, len(names))
	for i, n := range names {
		sinks[i] = o.sinks[n]
	}
	o.mu.Unlock()
	var out []sinkCommit
	for i, so := range sinks {
		so.mu.Lock()
		for _, topic := range slices.Sorted(maps.Keys(so.topics)) {
			parts := so.topics[topic]
			for _, p := range slices.Sorted(maps.Keys(parts)) {
				out = append(out, sinkCommit{sink: names[i], topic: topic, partition: p, committedOffset: parts[p]})
			}
		}
		so.mu.Unlock()
	}
	return out
}
