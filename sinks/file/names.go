package file

import (
	"fmt"
	"strconv"
	"strings"

	"logship/logstore/batch"
)

// Naming, version 1. See doc.go. Format: do not change; a new layout gets
// a new suffix.
const (
	// Suffix ends every published file name of version 1 in the plain
	// lines format without compression; see also the Suffix* constants.
	Suffix = ".log"
	// TmpDir is the directory, under Options.Dir, of the files being
	// written. It is not a possible topic of this sink.
	TmpDir = "_tmp"
	// StateDir is the directory, under Options.Dir, of the partitions'
	// markers. It is not a possible topic of this sink either.
	StateDir = "_state"

	tmpSuffix    = ".tmp"
	sep          = "+" // cannot appear in a topic or aggregator id
	offsetDigits = 20  // every int64 fits in 19 digits; 20 leaves no doubt
	randDigits   = 16  // hex digits of a temporary file's random part
	epochPrefix  = "e" // starts the optional sixth field
)

// Suffixes of published files besides Suffix: the record format and the
// compression (doc.go). Names: do not change.
const (
	SuffixGzip     = ".log.gz"
	SuffixZstd     = ".log.zst"
	SuffixJSON     = ".json"
	SuffixJSONGzip = ".json.gz"
	SuffixJSONZstd = ".json.zst"
)

// suffixes lists every suffix a published file may end with.
var suffixes = []string{Suffix, SuffixGzip, SuffixZstd, SuffixJSON, SuffixJSONGzip, SuffixJSONZstd}

// FileName is what a published file's name says.
type FileName struct {
	Topic      string
	Aggregator string
	Partition  int
	First      int64  // offset of the first record, inclusive
	Last       int64  // offset of the last record, inclusive
	Epoch      uint64 // the reset epoch it was written under; 0 until an operator's first reset
	// Ext is the file's suffix when it is not Suffix (".log", plain
	// lines): one of the Suffix* constants. "" means Suffix.
	Ext string
}

// Format is the record format the name says: FormatLines or FormatJSON.
func (n FileName) Format() string {
	if strings.HasPrefix(n.suffix(), SuffixJSON) {
		return FormatJSON
	}
	return FormatLines
}

// Compression is the compression the name says: CompressionNone,
// CompressionGzip or CompressionZstd.
func (n FileName) Compression() string {
	switch {
	case strings.HasSuffix(n.suffix(), ".gz"):
		return CompressionGzip
	case strings.HasSuffix(n.suffix(), ".zst"):
		return CompressionZstd
	}
	return CompressionNone
}

func (n FileName) suffix() string {
	if n.Ext == "" {
		return Suffix
	}
	return n.Ext
}

// suffixFor returns the suffix of the files of a format and compression,
// both already checked.
func suffixFor(format, compression string) string {
	s := Suffix
	if format == FormatJSON {
		s = SuffixJSON
	}
	switch compression {
	case CompressionGzip:
		s += ".gz"
	case CompressionZstd:
		s += ".zst"
	}
	return s
}

// extFor is the FileName.Ext of a suffix.
func extFor(suffix string) string {
	if suffix == Suffix {
		return ""
	}
	return suffix
}

// String returns the file's base name:
// <topic>+<aggregator>+<partition>+<first>+<last>.log with both offsets
// in 20 zero-padded digits, so that names sort by offset, and
// +e<epoch> before the suffix when Epoch is not 0. The suffix is Ext, or
// Suffix when Ext is empty.
func (n FileName) String() string {
	e := ""
	if n.Epoch > 0 {
		e = sep + epochPrefix + strconv.FormatUint(n.Epoch, 10)
	}
	return fmt.Sprintf("%s+%s+%d+%0*d+%0*d%s%s", n.Topic, n.Aggregator, n.Partition, offsetDigits, n.First, offsetDigits, n.Last, e, n.suffix())
}

// Next is the offset just past the file's last record.
func (n FileName) Next() int64 { return n.Last + 1 }

// ParseName parses a published file's base name strictly: every field must
// be valid and written exactly as String writes it (no sign, no extra
// zeros), and First <= Last.
func ParseName(name string) (FileName, error) {
	bad := func(why string) (FileName, error) {
		return FileName{}, fmt.Errorf("file: %q is not a published file name: %s", name, why)
	}
	var n FileName
	rest, ok := "", false
	for _, sfx := range suffixes {
		if rest, ok = strings.CutSuffix(name, sfx); ok {
			n.Ext = extFor(sfx)
			break
		}
	}
	if !ok {
		return bad("no " + Suffix + " (or other published file) suffix")
	}
	f := strings.Split(rest, sep)
	if len(f) == 6 {
		e, ok := strings.CutPrefix(f[5], epochPrefix)
		v, vok := parseDecimal(e)
		if !ok || !vok || v == 0 || strconv.FormatInt(v, 10) != e {
			return bad("invalid epoch")
		}
		n.Epoch, f = uint64(v), f[:5]
	}
	if len(f) != 5 {
		return bad("want 5 or 6 fields separated by " + sep)
	}
	n.Topic, n.Aggregator = f[0], f[1]
	if !batch.ValidName(n.Topic) || !batch.ValidName(n.Aggregator) {
		return bad("invalid topic or aggregator")
	}
	p, ok := parseDecimal(f[2])
	if !ok || p > 1<<32-1 || strconv.FormatInt(p, 10) != f[2] {
		return bad("invalid partition")
	}
	n.Partition = int(p)
	if len(f[3]) != offsetDigits || len(f[4]) != offsetDigits {
		return bad("offsets must have 20 digits")
	}
	if n.First, ok = parseDecimal(f[3]); !ok {
		return bad("invalid first offset")
	}
	if n.Last, ok = parseDecimal(f[4]); !ok {
		return bad("invalid last offset")
	}
	if n.First > n.Last {
		return bad("first offset after last")
	}
	return n, nil
}

// parseDecimal parses ASCII digits only (strconv allows a sign).
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// partitionPrefix starts the names of a partition's published and
// temporary files; the trailing separator keeps partition 1 from matching
// partition 10.
func partitionPrefix(topic, agg string, partition int) string {
	return topic + sep + agg + sep + strconv.Itoa(partition) + sep
}

// tmpName is the base name of a temporary file:
// <topic>+<aggregator>+<partition>+<first>.<16 hex>.tmp. The random part
// keeps it unique even beside a file a crashed writer left (on HDFS such a
// file may still be under its old lease).
func tmpName(topic, agg string, partition int, first int64, random uint64) string {
	return fmt.Sprintf("%s%0*d.%0*x%s", partitionPrefix(topic, agg, partition), offsetDigits, first, randDigits, random, tmpSuffix)
}

// isTmpName reports whether name is a temporary file of the partition
// whose prefix is given, checked as strictly as a published name.
func isTmpName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, tmpSuffix)
	if !ok || len(rest) != offsetDigits+1+randDigits || rest[offsetDigits] != '.' {
		return false
	}
	if _, ok := parseDecimal(rest[:offsetDigits]); !ok {
		return false
	}
	_, err := strconv.ParseUint(rest[offsetDigits+1:], 16, 64)
	return err == nil && strings.ToLower(rest[offsetDigits+1:]) == rest[offsetDigits+1:]
}
