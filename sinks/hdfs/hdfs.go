package hdfs

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"logship/sinks/file"
)

// Defaults for Options. RollSize and RollInterval default as in package
// file (128 MiB, the usual block size; 15m).
const (
	DefaultIdleTimeout = 5 * time.Minute
	DefaultBufferSize  = 8 << 20
	DefaultTimeout     = 60 * time.Second
	// DefaultRetries with DefaultRetryBackoff (doubling up to package
	// file's 5s cap: 0.5+1+2+4+11×5s) retry a publish's NameNode steps for
	// about a minute: what a NameNode HA failover takes (the failover
	// controller's session timeout, fencing, the standby's transition),
	// so that a failover does not throw files away. The context of the
	// call (a shutdown's close timeout) still bounds them.
	DefaultRetries      = 15
	DefaultRetryBackoff = 500 * time.Millisecond
)

// Options configure an HDFS sink.
type Options struct {
	// Namenodes are host:port of the NameNode, or of both of an HA pair
	// (the client fails over between them).
	Namenodes []string
	// User is the HDFS user the sink acts as.
	User string
	// Path is where files are published: an absolute path template, e.g.
	// "/logs/{topic}/{yyyy}/{mm}/{dd}/{hh}" (fields: see package file).
	// Its fixed leading directories ("/logs") are the sink's directory,
	// which holds _tmp/ and _state/ too; there must be at least one.
	Path string
	// RollSize, RollInterval, IdleTimeout, Format, Compression: see
	// file.Options. IdleTimeout defaults to 5m here.
	RollSize     int64
	RollInterval time.Duration
	IdleTimeout  time.Duration
	Format       string
	Compression  string
	// BlockSize and Replication of the files; 0 takes the cluster's.
	BlockSize   int64
	Replication int
	// BufferSize is each open file's write buffer. Default 8 MiB.
	BufferSize int
	// Timeout bounds each dial, NameNode call and datanode write while it
	// makes no progress. Default 60s.
	Timeout time.Duration
	// Retries of a publish's NameNode operations in place (rename,
	// mkdir, marker), with a backoff from RetryBackoff. Default 15, 500ms:
	// about a minute, an HA failover.
	Retries      int
	RetryBackoff time.Duration
	// UseDatanodeHostname: dial datanodes by host name, not IP.
	UseDatanodeHostname bool
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
}

// SplitPath splits an absolute path template into the sink's directory
// (its fixed leading directories) and the template relative to it.
func SplitPath(p string) (root, rel string, err error) {
	if !strings.HasPrefix(p, "/") || p == "/" {
		return "", "", fmt.Errorf("hdfs: path %q: want an absolute path below /", p)
	}
	if path.Clean(p) != p {
		return "", "", fmt.Errorf("hdfs: path %q: want a clean path (no trailing '/', '//', '.' or '..'): %q", p, path.Clean(p))
	}
	if strings.Contains(p, ":") {
		// DFSUtil.isValidName: every mkdir and create would be refused.
		return "", "", fmt.Errorf("hdfs: path %q: HDFS refuses ':' in a path element", p)
	}
	segs := strings.Split(p[1:], "/")
	i := 0
	for i < len(segs) && !strings.ContainsAny(segs[i], "{}") {
		i++
	}
	if i == 0 {
		return "", "", fmt.Errorf("hdfs: path %q: want a fixed directory first, e.g. /logs/{topic}: it holds the sink's _tmp and _state", p)
	}
	root = "/" + strings.Join(segs[:i], "/")
	rel = strings.Join(segs[i:], "/")
	if _, err := file.ParseTemplate(rel); err != nil {
		return "", "", fmt.Errorf("hdfs: %w", err)
	}
	return root, rel, nil
}

// New returns the HDFS sink: the file engine (package file) over an FS
// on the HDFS client. It does not connect: the partitions' Open does, and
// a NameNode that is down is retried by the runtime.
func New(o Options) (*file.Sink, error) {
	root, rel, err := SplitPath(o.Path)
	if err != nil {
		return nil, err
	}
	fsys, err := NewFS(FSOptions{
		Namenodes: o.Namenodes, User: o.User,
		Replication: o.Replication, BlockSize: o.BlockSize,
		Timeout: o.Timeout, UseDatanodeHostname: o.UseDatanodeHostname,
	})
	if err != nil {
		return nil, err
	}
	if o.Replication < 0 || o.BlockSize < 0 || o.Retries < 0 {
		return nil, errors.New("hdfs: negative replication, block size or retries")
	}
	if rel == "" {
		rel = "." // the sink's directory itself
	}
	fo := file.Options{
		Dir: root, Path: rel, FS: fsys, Lazy: true,
		RollSize: o.RollSize, RollInterval: o.RollInterval, IdleTimeout: o.IdleTimeout,
		Format: o.Format, Compression: o.Compression, BufferSize: o.BufferSize,
		Retries: o.Retries, RetryBackoff: o.RetryBackoff, Logger: o.Logger,
	}
	ApplyDefaults(&fo)
	return file.New(fo)
}

// ApplyDefaults sets the HDFS defaults of the engine's options that differ
// from package file's (idle timeout, buffer, retries) where they are zero.
// Tests of the engine over a local directory use it to run as HDFS does.
func ApplyDefaults(o *file.Options) {
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
}
