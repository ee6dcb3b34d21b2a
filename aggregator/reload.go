package aggregator

import (
	"errors"
	"time"
)

// SetRetention changes the log's retention while the server runs (the
// aggregator's reload on SIGHUP): age 0 is the default, negative never by
// age; bytes 0 is unlimited. The next retention check applies it. Safe
// for concurrent use.
func (s *Server) SetRetention(age time.Duration, bytes int64) error {
	return s.store.SetRetention(age, bytes)
}

// Ready reports whether the server takes connections: nil while Run
// serves, an error before and once shutdown began (for /readyz). Safe for
// concurrent use.
func (s *Server) Ready() error {
	switch {
	case s.stopAt.Load() != 0:
		return errors.New("shutting down")
	case !s.ran.Load():
		return errors.New("not serving yet")
	}
	return nil
}
