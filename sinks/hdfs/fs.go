package hdfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	hdfs "github.com/colinmarc/hdfs/v2"

	"logship/sinks/file"
)

// Errors the FS adds to the client's, so that logs and tests can tell them
// apart (errors.Is).
var (
	// ErrQuota: a NameNode refused an operation for a space or name
	// quota. It passes only when someone frees space or raises the quota.
	ErrQuota = errors.New("hdfs: quota exceeded")
	// ErrUnavailable: no NameNode could be reached, or a connection broke.
	ErrUnavailable = errors.New("hdfs: namenode unavailable")
)

// closeRetries and closeBackoff bound the retries of a file's close while
// the NameNode says its last block is still being replicated.
const (
	closeRetries = 6
	closeBackoff = 100 * time.Millisecond
)

// FS is a file.FS over an HDFS client. The client is made on first use
// and made again after a connection broke, so a NameNode that is down when
// the sink starts, or fails over, costs retries, not a restart. Safe for
// concurrent use; the client serialises its NameNode calls.
type FS struct {
	opts        hdfs.ClientOptions
	replication int
	blockSize   int64
	timeout     time.Duration

	mu     sync.Mutex
	c      *hdfs.Client
	closed bool
}

var _ file.FS = (*FS)(nil)

// FSOptions configure an FS.
type FSOptions struct {
	Namenodes []string // host:port, one or an HA pair
	User      string   // the HDFS user to act as
	// Replication and BlockSize of the files created; 0 takes the
	// cluster's defaults.
	Replication int
	BlockSize   int64
	// Timeout bounds each dial, and each NameNode call and datanode write
	// while it makes no progress. Default 60s.
	Timeout time.Duration
	// UseDatanodeHostname: dial datanodes by name, not IP.
	UseDatanodeHostname bool
}

// NewFS returns an FS. It does not connect: the first operation does.
func NewFS(o FSOptions) (*FS, error) {
	if len(o.Namenodes) == 0 {
		return nil, errors.New("hdfs: no namenodes")
	}
	if o.User == "" {
		return nil, errors.New("hdfs: no user")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	dial := (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext
	timeout := o.Timeout
	return &FS{
		opts: hdfs.ClientOptions{
			Addresses: o.Namenodes,
			User:      o.User,
			// The client has no deadline on NameNode calls: a hung
			// NameNode would hang the sink. Each read and write of the
			// connection gets one (NameNode calls are request and reply;
			// nothing reads while the connection is idle).
			NamenodeDialFunc: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &deadlineConn{Conn: c, timeout: timeout}, nil
			},
			// Datanode connections are bounded per operation by the
			// files' SetDeadline: their ack reader blocks while idle.
			DatanodeDialFunc:    dial,
			UseDatanodeHostname: o.UseDatanodeHostname,
		},
		replication: o.Replication,
		blockSize:   o.BlockSize,
		timeout:     o.Timeout,
	}, nil
}

// client returns the client, connecting first if needed.
func (f *FS) client() (*hdfs.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("hdfs: FS closed")
	}
	if f.c != nil {
		return f.c, nil
	}
	c, err := hdfs.NewClient(f.opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	f.c = c
	return c, nil
}

// check classifies err from client c: a broken connection drops c (the
// next operation connects again; files open on it fail and are written
// again), and quota refusals are marked ErrQuota.
func (f *FS) check(c *hdfs.Client, err error) error {
	if err == nil {
		return nil
	}
	if isQuota(err) {
		return fmt.Errorf("%w: %w", ErrQuota, err)
	}
	if isRemote(err) {
		return err
	}
	f.mu.Lock()
	if f.c == c {
		f.c = nil
		c.Close()
	}
	f.mu.Unlock()
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// isRemote reports whether err is an answer of the NameNode (the
// connection is fine), not a failure to get one.
func isRemote(err error) bool {
	var re hdfs.Error
	if errors.As(err, &re) {
		return true
	}
	for _, e := range []error{fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrInvalid, syscall.ENOTEMPTY, hdfs.ErrReplicating} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isQuota reports whether err is a NameNode's quota refusal
// (DSQuotaExceededException, NSQuotaExceededException).
func isQuota(err error) bool {
	var re hdfs.Error
	return errors.As(err, &re) && strings.Contains(re.Exception(), "QuotaExceededException")
}

// do runs op with the client and classifies its error.
func (f *FS) do(op func(c *hdfs.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	return f.check(c, op(c))
}

// MkdirAll implements file.FS.
func (f *FS) MkdirAll(dir string) error {
	return f.do(func(c *hdfs.Client) error { return c.MkdirAll(dir, 0o755) })
}

// Create implements file.FS: a new file, with the FS's replication and
// block size, refused when name exists.
func (f *FS) Create(name string) (file.File, error) {
	var w *hdfs.FileWriter
	err := f.do(func(c *hdfs.Client) error {
		repl, bs := f.replication, f.blockSize
		if repl == 0 || bs == 0 {
			d, err := c.ServerDefaults()
			if err != nil {
				return err
			}
			if repl == 0 {
				repl = d.Replication
			}
			if bs == 0 {
				bs = d.BlockSize
			}
		}
		var err error
		w, err = c.CreateFile(name, repl, bs, 0o644)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &hdfsFile{fs: f, w: w, name: name}, nil
}

// Rename implements file.FS. HDFS replaces newname atomically.
func (f *FS) Rename(oldname, newname string) error {
	return f.do(func(c *hdfs.Client) error { return c.Rename(oldname, newname) })
}

// ReadDir implements file.FS.
func (f *FS) ReadDir(dir string) ([]string, error) {
	var names []string
	err := f.do(func(c *hdfs.Client) error {
		fis, err := c.ReadDir(dir)
		for _, fi := range fis {
			names = append(names, fi.Name())
		}
		return err
	})
	return names, err
}

// ReadFile implements file.FS.
func (f *FS) ReadFile(name string) ([]byte, error) {
	var b []byte
	err := f.do(func(c *hdfs.Client) (err error) {
		b, err = c.ReadFile(name)
		return err
	})
	return b, err
}

// Stat implements file.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := f.do(func(c *hdfs.Client) (err error) {
		fi, err = c.Stat(name)
		return err
	})
	return fi, err
}

// Remove implements file.FS. It removes a file under construction too,
// whoever holds its lease.
func (f *FS) Remove(name string) error {
	return f.do(func(c *hdfs.Client) error { return c.Remove(name) })
}

// SyncDir implements file.FS: nothing to do, the NameNode logs every
// namespace change before it answers.
func (f *FS) SyncDir(string) error { return nil }

// Close closes the client: the leases of files still open end with it.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.c == nil {
		return nil
	}
	err := f.c.Close()
	f.c = nil
	return err
}

// hdfsFile is a file being written. One goroutine uses it.
type hdfsFile struct {
	fs       *FS
	w        *hdfs.FileWriter
	name     string
	deadline time.Time // set by SetDeadline: bounds every later operation
}

// op bounds one datanode operation: it makes no progress for Timeout (or
// passes the file's deadline) and it fails. The deadline is lifted after,
// since the pipeline's ack reader waits on the connection while idle.
func (h *hdfsFile) op(fn func() error) error {
	d := time.Now().Add(h.fs.timeout)
	if !h.deadline.IsZero() && h.deadline.Before(d) {
		d = h.deadline
	}
	h.w.SetDeadline(d)
	err := fn()
	h.w.SetDeadline(time.Time{})
	return err
}

func (h *hdfsFile) Write(p []byte) (n int, err error) {
	err = h.op(func() error {
		n, err = h.w.Write(p)
		return err
	})
	return n, h.fileErr(err)
}

// Sync sends what was written to every datanode of the pipeline and waits
// for their acks (hflush). The file is complete and durable at Close.
func (h *hdfsFile) Sync() error { return h.fileErr(h.op(h.w.Flush)) }

// Close finishes the last block and completes the file with the NameNode,
// which ends its lease. While the NameNode answers that the last block is
// not replicated enough yet, Close asks again, a few times, with a backoff
// (as the Java client does); after that the error stands and the sink
// throws the file away.
func (h *hdfsFile) Close() error {
	var err error
	wait := closeBackoff
	for i := 0; ; i++ {
		err = h.op(h.w.Close)
		if err == nil || !hdfs.IsErrReplicating(err) || i == closeRetries {
			break
		}
		if !h.deadline.IsZero() && time.Now().Add(wait).After(h.deadline) {
			break
		}
		time.Sleep(wait)
		wait *= 2
	}
	return h.fileErr(err)
}

// SetDeadline implements file.Deadliner.
func (h *hdfsFile) SetDeadline(t time.Time) error {
	h.deadline = t
	return nil
}

// fileErr classifies a write error. A datanode failing mid-write is not
// the NameNode's connection: the client is kept.
func (h *hdfsFile) fileErr(err error) error {
	if err == nil {
		return nil
	}
	if isQuota(err) {
		return fmt.Errorf("%w: %w", ErrQuota, err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) {
		err = &os.PathError{Op: "write", Path: h.name, Err: err}
	}
	return err
}

// deadlineConn gives every Read and Write of a NameNode connection a
// deadline of timeout from when it starts.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
