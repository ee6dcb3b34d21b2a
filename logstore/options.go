package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
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
	DefaultSegmentMaxAge      = time.Hour
	DefaultMaxOpenSegments    = 128
	DefaultRetentionAge       = 7 * 24 * time.Hour
	DefaultRetentionCheck     = time.Minute
	DefaultCheckpointInterval = time.Minute
	DefaultSourceStateTTL     = 7 * 24 * time.Hour

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

	// SegmentMaxAge rolls the active segment once its first batch is this
	// old, on append and, for an idle partition, by the Store's timer, so
	// that retention can delete it later. Default 1h. See doc.go, "Segment
	// lifecycle".
	SegmentMaxAge time.Duration
	// MaxOpenSegments bounds the sealed segments whose file is open and
	// whose indexes are in memory, for the whole Store (the active segment
	// of each partition is not counted). Default 128.
	MaxOpenSegments int
	// RetentionAge deletes a sealed segment once its last append time is
	// older than this. Default 7 days; negative: never by age.
	RetentionAge time.Duration
	// RetentionBytes deletes the oldest sealed segments of a partition
	// while the partition holds more than this many bytes. Default 0:
	// unlimited.
	RetentionBytes int64
	// RetentionCheckInterval is how often the Store's goroutine enforces
	// retention. Default 1 minute.
	RetentionCheckInterval time.Duration

	// live holds the retention limits a running Store uses, which
	// SetRetention changes; nil outside a Store (tests of parts).
	live *liveRetention

	// CheckpointInterval is how often the Store's checkpoint goroutine
	// records every partition's recovery point (it also does so soon after
	// each roll). Default 1 minute. See doc.go, "Recovery".
	CheckpointInterval time.Duration
	// SourceStateTTL drops a source from its partition's source table
	// (Partition.Sources) at a segment roll once its last batch is this
	// much older than the partition's newest batch. Default 7 days. See
	// doc.go, "Source state".
	SourceStateTTL time.Duration
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
	if o.SegmentMaxAge < 0 {
		errs = append(errs, fmt.Errorf("logstore: SegmentMaxAge %v is negative", o.SegmentMaxAge))
	}
	if o.MaxOpenSegments < 0 {
		errs = append(errs, fmt.Errorf("logstore: MaxOpenSegments %d is negative", o.MaxOpenSegments))
	}
	if o.RetentionBytes < 0 {
		errs = append(errs, fmt.Errorf("logstore: RetentionBytes %d is negative", o.RetentionBytes))
	}
	if o.RetentionCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("logstore: RetentionCheckInterval %v is negative", o.RetentionCheckInterval))
	}
	if o.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("logstore: CheckpointInterval %v is negative", o.CheckpointInterval))
	}
	if o.SourceStateTTL < 0 {
		errs = append(errs, fmt.Errorf("logstore: SourceStateTTL %v is negative", o.SourceStateTTL))
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
	if o.SegmentMaxAge == 0 {
		o.SegmentMaxAge = DefaultSegmentMaxAge
	}
	if o.MaxOpenSegments == 0 {
		o.MaxOpenSegments = DefaultMaxOpenSegments
	}
	if o.RetentionAge == 0 {
		o.RetentionAge = DefaultRetentionAge
	}
	if o.RetentionCheckInterval == 0 {
		o.RetentionCheckInterval = DefaultRetentionCheck
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.SourceStateTTL == 0 {
		o.SourceStateTTL = DefaultSourceStateTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// liveRetention is the retention a running Store enforces: the Options'
// values at Open, then SetRetention's.
type liveRetention struct {
	age, bytes atomic.Int64
}

// retention returns the age and byte limits in force.
func (o *Options) retention() (age time.Duration, bytes int64) {
	if o.live == nil {
		return o.RetentionAge, o.RetentionBytes
	}
	return time.Duration(o.live.age.Load()), o.live.bytes.Load()
}
