package cassandra

import (
	"context"
	"errors"

	"github.com/gocql/gocql"
)

// kind sorts a failed write: what the sink does next depends on it alone.
// The names are the values of the "kind" label of the error metric and of
// the dead-letter files' "kind" field: do not change them.
type kind int

const (
	kindTimeout     kind = iota // the coordinator or the client timed out: retried
	kindUnavailable             // not enough replicas alive, or bootstrapping: retried
	kindOverloaded              // the coordinator is overloaded: retried
	kindConnection              // no connection, connection lost: retried
	kindOther                   // anything unknown: retried (never dropped)
	kindConfig                  // unauthorized, syntax, a table that cannot be written: retried, logged as ERROR
	kindRejected                // Cassandra refuses this record: dead-lettered
	kindTooLarge                // larger than max_record_bytes: dead-lettered without being sent
	kindExhausted               // max_retries reached: dead-lettered
	kindDeadLetter              // the dead-letter file could not be written: retried
	numKinds
)

var kindNames = [numKinds]string{
	kindTimeout:     "timeout",
	kindUnavailable: "unavailable",
	kindOverloaded:  "overloaded",
	kindConnection:  "connection",
	kindOther:       "other",
	kindConfig:      "config",
	kindRejected:    "rejected",
	kindTooLarge:    "too_large",
	kindExhausted:   "retries_exhausted",
	kindDeadLetter:  "dead_letter_io",
}

func (k kind) String() string { return kindNames[k] }

// transient reports whether a write that failed with k is tried again as it
// is. A rejected batch is split instead; a config error is retried too, but
// is the operator's to fix.
func (k kind) transient() bool { return k <= kindOther }

// classify sorts err, a failed WriteBatch or Probe. It looks at types and
// codes only, never at messages.
func classify(err error) kind {
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout:
			return kindTimeout
		case gocql.ErrCodeUnavailable, gocql.ErrCodeBootstrapping:
			return kindUnavailable
		case gocql.ErrCodeOverloaded, gocql.ErrCodeTruncate:
			return kindOverloaded
		case gocql.ErrCodeInvalid:
			// Invalid is also what a missing table or column gives:
			// the executor asks Probe before it blames the record.
			return kindRejected
		case gocql.ErrCodeSyntax, gocql.ErrCodeUnauthorized, gocql.ErrCodeConfig,
			gocql.ErrCodeCredentials, gocql.ErrCodeProtocol:
			return kindConfig
		}
		// Server errors, write and read failures, CDC: the node may
		// recover; retried. A record too large for a mutation is caught
		// before it is sent (max_record_bytes), because Cassandra 3
		// answers one with a timeout, not a refusal.
		return kindOther
	}
	var me gocql.MarshalError
	if errors.As(err, &me) {
		return kindRejected // a value the driver cannot encode never will be
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, gocql.ErrTimeoutNoResponse),
		errors.Is(err, gocql.ErrTooManyTimeouts):
		return kindTimeout
	case errors.Is(err, gocql.ErrNoConnections), errors.Is(err, gocql.ErrConnectionClosed),
		errors.Is(err, gocql.ErrNoStreams), errors.Is(err, gocql.ErrUnavailable),
		errors.Is(err, gocql.ErrNoConnectionsStarted), errors.Is(err, gocql.ErrSessionClosed):
		return kindConnection
	case errors.Is(err, gocql.ErrTooManyStmts):
		panic("BUG: cassandra: a batch above gocql's statement limit was built")
	}
	return kindOther
}
