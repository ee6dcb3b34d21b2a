package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// FsyncPolicy says when appended data counts as durable. See the package
// documentation, "Durability".
type FsyncPolicy int

// Fsync policies.
const (
	FsyncAlways FsyncPolicy = iota
	FsyncInterval
	FsyncNever
)

func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncInterval:
		return "interval"
	case FsyncNever:
		return "never"
	}
	return fmt.Sprintf("FsyncPolicy(%d)", int(p))
}

// ParseFsync maps a config value ("always", "interval", "never") to a policy.
func ParseFsync(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("logstore: unknown fsync policy %q (want always, interval or never)", s)
}

// Defaults used for zero Options fields.
const (
	DefaultSegmentBytes       = 1 << 30
	DefaultIndexIntervalBytes = 4 << 10
	DefaultFsyncInterval      = time.Second

	// MinSegmentBytes keeps tiny test segments from being silly.
	MinSegmentBytes = 1 << 10
	// MaxSegmentBytes is bounded by the 32-bit positions of the index.
	MaxSegmentBytes = math.MaxUint32
)

// Options configure a Store. The zero value is valid: every zero field
// takes its default.
type Options struct {
	SegmentBytes       int64            // roll a segment past this size; default 1 GiB
	IndexIntervalBytes int              // bytes between sparse offset-index entries; default 4 KiB
	Fsync              FsyncPolicy      // default FsyncAlways
	FsyncInterval      time.Duration    // for FsyncInterval; default 1s
	Logger             *slog.Logger     // nil: discard
	Now                func() time.Time // nil: time.Now (append time for batch.Stamp)
}

// Validate reports every problem with o, naming the fields.
func (o Options) Validate() error {
	var errs []error
	if o.SegmentBytes != 0 && (o.SegmentBytes < MinSegmentBytes || o.SegmentBytes > MaxSegmentBytes) {
		errs = append(errs, fmt.Errorf("logstore: SegmentBytes %d outside [%d, %d]", o.SegmentBytes, MinSegmentBytes, int64(MaxSegmentBytes)))
	}
	if o.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("logstore: IndexIntervalBytes %d is negative", o.IndexIntervalBytes))
	}
	if o.Fsync < FsyncAlways || o.Fsync > FsyncNever {
		errs = append(errs, fmt.Errorf("logstore: unknown Fsync policy %d", int(o.Fsync)))
	}
	if o.FsyncInterval < 0 {
		errs = append(errs, fmt.Errorf("logstore: FsyncInterval %v is negative", o.FsyncInterval))
	}
	return errors.Join(errs...)
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.FsyncInterval == 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
