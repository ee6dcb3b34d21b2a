package logstore

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Test with errors.Is.
var (
	// ErrOutOfRange is wrapped by every *OutOfRangeError.
	ErrOutOfRange = errors.New("logstore: offset out of range")
	// ErrClosed is returned by every call on a closed Store or Partition.
	ErrClosed = errors.New("logstore: closed")
	// ErrCorrupt is matched by every *CorruptionError.
	ErrCorrupt = errors.New("logstore: corrupt")
	// ErrFailed is wrapped by the error every Append and WaitDurable returns
	// once an fsync or write of the partition failed: the kernel may have
	// dropped the data, so nothing may be acknowledged any more. Reopening
	// the store recovers what really reached the disk.
	ErrFailed = errors.New("logstore: partition failed")
)

// OutOfRangeError is returned by Read for an offset outside [Start, End].
type OutOfRangeError struct {
	Topic     string
	Partition int
	Offset    int64
	Start     int64
	End       int64
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("logstore: offset %d out of range [%d, %d] in %s-%d", e.Offset, e.Start, e.End, e.Topic, e.Partition)
}

// Unwrap makes errors.Is(err, ErrOutOfRange) true.
func (e *OutOfRangeError) Unwrap() error { return ErrOutOfRange }

// CorruptionError reports damage before the tail of a partition: in an
// older segment, in a segment header, or inside data that was already
// recovered. Path is the damaged file and Offset the byte position in it.
type CorruptionError struct {
	Path   string
	Offset int64
	Err    error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("logstore: corrupt %s at byte %d: %v", e.Path, e.Offset, e.Err)
}

// Unwrap returns the cause (often a batch error such as batch.ErrChecksum).
func (e *CorruptionError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }
