package aggregator

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	offsetsVersion = 1
	offsetsSuffix  = ".offsets"
)

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
	topics map[string]map[uint32]int64
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
		if err == nil && v != offsetsVersion {
			err = fmt.Errorf("%s: offsets version %d, this aggregator reads %d", path, v, offsetsVersion)
		}
		if err == nil {
			var topics map[string]map[uint32]int64
			if topics, err = decodeOffsets(body); err != nil {
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

// decodeOffsets parses and checks an offsets body.
func decodeOffsets(body []byte) (map[string]map[uint32]int64, error) {
	var raw map[string]map[string]int64
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]map[uint32]int64, len(raw))
	for topic, parts := range raw {
		if err := batch.CheckName("topic", topic); err != nil {
			return nil, err
		}
		m := make(map[uint32]int64, len(parts))
		for ps, off := range parts {
			p, err := strconv.ParseUint(ps, 10, 32)
			if err != nil || strconv.FormatUint(p, 10) != ps {
				return nil, fmt.Errorf("topic %q: bad partition %q", topic, ps)
			}
			if off < 0 {
				return nil, fmt.Errorf("topic %q partition %d: negative offset %d", topic, p, off)
			}
			m[uint32(p)] = off
		}
		out[topic] = m
	}
	return out, nil
}

// encodeOffsets is the inverse of decodeOffsets. encoding/json sorts map
// keys, so equal offsets give equal bytes.
func encodeOffsets(topics map[string]map[uint32]int64) []byte {
	raw := make(map[string]map[string]int64, len(topics))
	for topic, parts := range topics {
		m := make(map[string]int64, len(parts))
		for p, off := range parts {
			m[strconv.FormatUint(uint64(p), 10)] = off
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
		so = &sinkOffsets{topics: make(map[string]map[uint32]int64)}
		o.sinks[name] = so
	}
	return so
}

// commit stores a sink's next offset for one partition, durably, before it
// returns. Errors for invalid requests wrap errInvalidCommit.
func (o *offsetStore) commit(sink, topic string, partition uint32, offset int64) error {
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
	if had && old == offset {
		return nil // already durable
	}
	if parts == nil {
		parts = make(map[uint32]int64)
		so.topics[topic] = parts
	}
	parts[partition] = offset
	err := statefile.Write(filepath.Join(o.dir, sink+offsetsSuffix), offsetsKind, offsetsVersion, encodeOffsets(so.topics))
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
	for p, off := range parts {
		out = append(out, wire.PartitionOffset{Partition: p, Offset: off})
	}
	slices.SortFunc(out, func(a, b wire.PartitionOffset) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}
