package aggregator

import "time"

// SetRetention changes the log's retention while the server runs (the
// aggregator's reload on SIGHUP): age 0 is the default, negative never by
// age; bytes 0 is unlimited. The next retention check applies it. Safe
// for concurrent use.
func (s *Server) SetRetention(age time.Duration, bytes int64) error {
	return s.store.SetRetention(age, bytes)
}
