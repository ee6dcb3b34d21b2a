package logstore

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"logship/logstore/batch"
)

// Store is a set of partitions rooted at one directory. All methods are
// safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	fsys fileSystem
	lock io.Closer
	// cache bounds the open sealed segments of every partition.
	cache *segCache

	mu     sync.RWMutex
	parts  map[partKey]*Partition
	closed bool

	// The Store's goroutines: the interval flusher (FsyncInterval only)
	// closes done, the upkeep loop (roll by age, retention) mdone. Close
	// closes stop and waits for both.
	stop  chan struct{}
	done  chan struct{}
	mdone chan struct{}

	// The checkpoint loop (checkpoint.go): Close closes cpStop and waits
	// for cpDone. rolled wakes it after a roll. cpMu serializes checkpoint
	// writes and guards lastCheckpoint, the content of the file.
	cpStop, cpDone chan struct{}
	rolled         chan struct{}
	cpMu           sync.Mutex
	lastCheckpoint []byte
}

type partKey struct {
	topic string
	id    int
}

// Open opens (creating if needed) a store rooted at dir. Every existing
// partition directory is opened and recovered before Open returns (see the
// package documentation, "Recovery"); damage that recovery may not repair
// is returned as a *CorruptionError. Only one Store may have dir open at a
// time, across processes.
func Open(dir string, opts Options) (*Store, error) {
	return open(dir, opts, osFS{})
}

// open is Open on any file system; tests pass fault-injecting ones.
func open(dir string, opts Options, fsys fileSystem) (_ *Store, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		dir:   dir,
		opts:  opts.withDefaults(),
		fsys:  fsys,
		parts: make(map[partKey]*Partition),
	}
	s.opts.live = new(liveRetention)
	s.opts.live.age.Store(int64(s.opts.RetentionAge))
	s.opts.live.bytes.Store(s.opts.RetentionBytes)
	s.cache = newSegCache(&s.opts, fsys)
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	if s.lock, err = fsys.Lock(filepath.Join(dir, lockName)); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	defer func() {
		if err != nil {
			for _, p := range s.parts {
				p.close()
			}
			s.lock.Close()
		}
	}()
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	log := s.opts.Logger
	rps := s.readCheckpoint()
	s.rolled = make(chan struct{}, 1)
	for _, e := range ents {
		if (e.Name == lockName || e.Name == checkpointName) && !e.IsDir {
			continue
		}
		if e.Name == checkpointName+tmpSuffix && !e.IsDir {
			// A checkpoint write interrupted before its rename.
			if err := fsys.Remove(filepath.Join(dir, e.Name)); err != nil {
				return nil, fmt.Errorf("logstore: %w", err)
			}
			continue
		}
		topic, id, ok := parsePartitionDir(e.Name)
		if !ok || !e.IsDir {
			log.Warn("ignoring unexpected entry in store directory", "file", filepath.Join(dir, e.Name))
			continue
		}
		var rp *recoveryPoint
		if r, ok := rps[partKey{topic, id}]; ok {
			rp = &r
		}
		p, err := openPartition(&s.opts, fsys, s.cache, filepath.Join(dir, e.Name), topic, id, rp)
		if err != nil {
			return nil, err
		}
		p.rolled = s.rolled
		s.parts[partKey{topic, id}] = p
		log.Info("opened partition", "topic", topic, "partition", id, "offset", p.End(), "segments", len(p.segs))
	}
	// Replace the checkpoint before any append: its clean marks are true
	// only until the next write (doc.go, "Recovery").
	if err := s.writeCheckpoint(nil); err != nil {
		return nil, err
	}
	s.stop, s.mdone = make(chan struct{}), make(chan struct{})
	if s.opts.Fsync == FsyncInterval {
		s.done = make(chan struct{})
		go s.flushLoop()
	}
	go s.maintainLoop()
	s.startCheckpoints()
	return s, nil
}

// parsePartitionDir splits "<topic>-<id>" at its last '-'. The id must be
// written canonically (no sign, no leading zero), so that one partition
// has exactly one directory name.
func parsePartitionDir(name string) (topic string, id int, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return "", 0, false
	}
	topic, digits := name[:i], name[i+1:]
	id, err := strconv.Atoi(digits)
	if err != nil || id < 0 || strconv.Itoa(id) != digits || !batch.ValidName(topic) {
		return "", 0, false
	}
	return topic, id, true
}

// Partition returns the partition id of topic, creating it if needed.
func (s *Store) Partition(topic string, id int) (*Partition, error) {
	if p := s.Lookup(topic, id); p != nil {
		return p, nil
	}
	if err := batch.CheckName("topic", topic); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	if id < 0 {
		return nil, fmt.Errorf("logstore: invalid partition %d", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if p := s.parts[partKey{topic, id}]; p != nil {
		return p, nil
	}
	p, err := openPartition(&s.opts, s.fsys, s.cache, filepath.Join(s.dir, fmt.Sprintf("%s-%d", topic, id)), topic, id, nil)
	if err != nil {
		return nil, err
	}
	p.rolled = s.rolled
	if err := s.fsys.SyncDir(s.dir); err != nil {
		p.close()
		return nil, fmt.Errorf("logstore: sync %s: %w", s.dir, err)
	}
	s.parts[partKey{topic, id}] = p
	s.opts.Logger.Info("created partition", "topic", topic, "partition", id)
	return p, nil
}

// Lookup returns the partition id of topic, or nil when it does not exist.
func (s *Store) Lookup(topic string, id int) *Partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.parts[partKey{topic, id}]
}

// Partitions returns every partition, sorted by topic, then id.
func (s *Store) Partitions() []*Partition {
	s.mu.RLock()
	out := make([]*Partition, 0, len(s.parts))
	for _, p := range s.parts {
		out = append(out, p)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Partition) int {
		return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.id, b.id))
	})
	return out
}

// Close stops the flusher, syncs and closes every partition and releases
// the directory. Later calls return nil; every call on a partition then
// returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	if s.done != nil {
		<-s.done
	}
	<-s.mdone
	s.stopCheckpoints()
	var errs []error
	clean := make(map[partKey]bool)
	for _, p := range s.Partitions() {
		err := p.close()
		clean[partKey{p.topic, p.id}] = err == nil
		errs = append(errs, err)
	}
	// The partitions closed without error are marked clean: their next
	// Open scans nothing (doc.go, "Recovery").
	errs = append(errs, s.writeCheckpoint(clean))
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

// flushLoop fsyncs every partition with unsynced bytes every FsyncInterval
// (policy interval). It runs until Close.
func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			for _, p := range s.Partitions() {
				if err := p.flush(); err != nil {
					s.opts.Logger.Error("interval fsync failed", "topic", p.topic, "partition", p.id, "err", err)
				}
			}
		}
	}
}

// SetRetention changes the retention every partition is held to, as
// Options.RetentionAge and RetentionBytes do at Open (age 0 means the
// default, negative never by age; bytes 0 unlimited). The next retention
// check applies it; it is not persisted. Safe for concurrent use.
func (s *Store) SetRetention(age time.Duration, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("logstore: RetentionBytes %d is negative", bytes)
	}
	if age == 0 {
		age = DefaultRetentionAge
	}
	s.opts.live.age.Store(int64(age))
	s.opts.live.bytes.Store(bytes)
	s.opts.Logger.Info("retention changed", "retention_age", age, "retention_bytes", bytes)
	return nil
}
