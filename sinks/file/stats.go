package file

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats counts what a Sink did since New. Counters only grow.
type Stats struct {
	// Files, Records and Bytes count the files published, their records,
	// and their bytes as stored (compressed when compression is on).
	Files, Records, Bytes uint64
	// Abandoned counts the temporary files thrown away after an error;
	// their records are written again.
	Abandoned uint64
	// Retries counts the namespace operations (mkdir, rename, marker
	// writes) tried again in place after an error.
	Retries uint64
	// Errors counts failed operations by step ("create", "write", "sync",
	// "close", "rename", "marker", "recover", ...), retried or not.
	Errors map[string]uint64
	// OpenFiles is the number of temporary files being written now.
	OpenFiles int64
}

// stats is the Sink's live counters. Safe for concurrent use.
type stats struct {
	files, records, bytes, abandoned, retries atomic.Uint64
	open                                      atomic.Int64

	mu     sync.Mutex
	errors map[string]uint64
}

func (s *stats) failed(step string) {
	s.mu.Lock()
	if s.errors == nil {
		s.errors = map[string]uint64{}
	}
	s.errors[step]++
	s.mu.Unlock()
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	errs := maps.Clone(s.errors)
	s.mu.Unlock()
	if errs == nil {
		errs = map[string]uint64{}
	}
	return Stats{
		Files: s.files.Load(), Records: s.records.Load(), Bytes: s.bytes.Load(),
		Abandoned: s.abandoned.Load(), Retries: s.retries.Load(),
		Errors: errs, OpenFiles: s.open.Load(),
	}
}

// Stats returns a snapshot of the sink's counters. Safe for concurrent use.
func (s *Sink) Stats() Stats { return s.stats.snapshot() }
