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

// errFSClosed fails the operations of an FS after Close.
var errFSClosed = errors.New("hdfs: FS closed")

// FS is a file.FS over an HDFS client. The client is made on first use
// (a NameNode that is down when the sink starts costs retries, not a
// restart) and then kept until Close: its NameNode connection mends
// itself, since a connection whose call failed (a timeout, a reset) is
// closed at once and the client dials again on its next call, failing
// over between an HA pair. So the lease renewal of the files open on it
// goes on, and no connection is left behind. Safe for concurrent use; the
// client serialises its NameNode calls.
//
// It is a file.ContextFS: WithContext bounds each namespace call by a
// context, a file's Close by its deadline (file.Deadliner).
type FS struct {
	opts        hdfs.ClientOptions
	replication int
	blockSize   int64
	timeout     time.Duration

	life context.Context // ends at Close: aborts a dial under way
	stop context.CancelFunc

	mu     sync.Mutex // held while connecting: one attempt at a time
	c      *hdfs.Client
	closed bool

	cmu     sync.Mutex
	conns   map[*deadlineConn]struct{} // the NameNode connections open
	closing bool                       // Close began: no new connection, no new call
	// calls counts the goroutines of bounded calls (bounded), which may
	// outlive the caller that gave up on them until their own Timeout;
	// Close closes the connections they wait on and waits for them.
	calls sync.WaitGroup
}

var _ file.ContextFS = (*FS)(nil)

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
	f := &FS{
		replication: o.Replication,
		blockSize:   o.BlockSize,
		timeout:     o.Timeout,
		conns:       map[*deadlineConn]struct{}{},
	}
	f.life, f.stop = context.WithCancel(context.Background())
	f.opts = hdfs.ClientOptions{
		Addresses: o.Namenodes,
		User:      o.User,
		// The client has no deadline on NameNode calls: a hung NameNode
		// would hang the sink. Each read and write of the connection gets
		// one (NameNode calls are request and reply; nothing reads while
		// the connection is idle), and a connection that failed once is
		// closed, so that the client dials again rather than read a late
		// reply as the answer to its next call.
		NamenodeDialFunc: func(_ context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(f.life, network, addr)
			if err != nil {
				return nil, err
			}
			dc := &deadlineConn{Conn: c, timeout: f.timeout, fs: f}
			if !f.track(dc) {
				c.Close()
				return nil, errFSClosed
			}
			return dc, nil
		},
		// Datanode connections are bounded per operation by the files'
		// SetDeadline: their ack reader blocks while idle.
		DatanodeDialFunc:    dial,
		UseDatanodeHostname: o.UseDatanodeHostname,
	}
	return f, nil
}

// track records a new NameNode connection, so that Close can close it. It
// reports false once Close began.
func (f *FS) track(c *deadlineConn) bool {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	if f.closing {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *FS) untrack(c *deadlineConn) {
	f.cmu.Lock()
	delete(f.conns, c)
	f.cmu.Unlock()
}

// client returns the client, connecting first if needed.
func (f *FS) client() (*hdfs.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errFSClosed
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

// classify marks err: quota refusals ErrQuota, failures to get an answer
// from a NameNode ErrUnavailable (the client stays: its connection mends
// itself on the next call), a NameNode's answer as it is.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if isQuota(err) {
		return fmt.Errorf("%w: %w", ErrQuota, err)
	}
	if isRemote(err) {
		return err
	}
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

// do runs op with the client and classifies its error, bounded by ctx
// (bounded); undo, if not nil, undoes what op did when it succeeded after
// its caller had given up on it.
func (f *FS) do(ctx context.Context, op func(c *hdfs.Client) error, undo func()) error {
	return f.bounded(ctx, func() error {
		c, err := f.client()
		if err != nil {
			return err
		}
		return classify(op(c))
	}, undo)
}

// bounded runs fn and returns its error, or, if ctx ends first, an
// ErrUnavailable that wraps ctx's cause. The client has no way to stop a
// NameNode call (it serialises them on one connection that other
// partitions share): fn goes on in its goroutine until it returns by
// itself, within the FS's Timeout, or Close closes the connection under
// it, and Close waits for it. A ctx that cannot end runs fn in place.
func (f *FS) bounded(ctx context.Context, fn func() error, undo func()) error {
	if ctx.Done() == nil {
		return fn()
	}
	if ctx.Err() != nil {
		return gaveUp(ctx)
	}
	f.cmu.Lock()
	if f.closing {
		f.cmu.Unlock()
		return errFSClosed
	}
	f.calls.Add(1)
	f.cmu.Unlock()
	var (
		mu             sync.Mutex
		finished, left bool
		done           = make(chan error, 1)
	)
	go func() {
		defer f.calls.Done()
		err := fn()
		mu.Lock()
		finished = true
		gone := left
		mu.Unlock()
		if gone && err == nil && undo != nil {
			undo()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	if finished {
		return <-done
	}
	left = true
	return gaveUp(ctx)
}

func gaveUp(ctx context.Context) error {
	return fmt.Errorf("%w: gave up waiting for the namenode: %w", ErrUnavailable, context.Cause(ctx))
}

// WithContext implements file.ContextFS: the FS it returns bounds each of
// its calls by ctx.
func (f *FS) WithContext(ctx context.Context) file.FS { return ctxFS{f, ctx} }

// ctxFS is an FS whose calls are bounded by ctx.
type ctxFS struct {
	f   *FS
	ctx context.Context
}

func (c ctxFS) MkdirAll(dir string) error             { return c.f.mkdirAll(c.ctx, dir) }
func (c ctxFS) Create(name string) (file.File, error) { return c.f.create(c.ctx, name) }
func (c ctxFS) Rename(oldname, newname string) error  { return c.f.rename(c.ctx, oldname, newname) }
func (c ctxFS) ReadDir(dir string) ([]string, error)  { return c.f.readDir(c.ctx, dir) }
func (c ctxFS) ReadFile(name string) ([]byte, error)  { return c.f.readFile(c.ctx, name) }
func (c ctxFS) Stat(name string) (fs.FileInfo, error) { return c.f.stat(c.ctx, name) }
func (c ctxFS) Remove(name string) error              { return c.f.remove(c.ctx, name) }
func (c ctxFS) SyncDir(string) error                  { return nil }

// MkdirAll implements file.FS.
func (f *FS) MkdirAll(dir string) error { return f.mkdirAll(context.Background(), dir) }

func (f *FS) mkdirAll(ctx context.Context, dir string) error {
	return f.do(ctx, func(c *hdfs.Client) error { return c.MkdirAll(dir, 0o755) }, nil)
}

// Create implements file.FS: a new file, with the FS's replication and
// block size, refused when name exists.
func (f *FS) Create(name string) (file.File, error) { return f.create(context.Background(), name) }

func (f *FS) create(ctx context.Context, name string) (file.File, error) {
	var w *hdfs.FileWriter
	err := f.do(ctx, func(c *hdfs.Client) error {
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
	}, func() {
		// Created after the caller gave up: end its lease. The empty
		// temporary file is deleted by the partition's next Open.
		w.Close()
	})
	if err != nil {
		return nil, err
	}
	return &hdfsFile{fs: f, w: w, name: name}, nil
}

// Rename implements file.FS. HDFS replaces newname atomically.
func (f *FS) Rename(oldname, newname string) error {
	return f.rename(context.Background(), oldname, newname)
}

func (f *FS) rename(ctx context.Context, oldname, newname string) error {
	return f.do(ctx, func(c *hdfs.Client) error { return c.Rename(oldname, newname) }, nil)
}

// ReadDir implements file.FS.
func (f *FS) ReadDir(dir string) ([]string, error) { return f.readDir(context.Background(), dir) }

func (f *FS) readDir(ctx context.Context, dir string) ([]string, error) {
	var names []string
	err := f.do(ctx, func(c *hdfs.Client) error {
		fis, err := c.ReadDir(dir)
		for _, fi := range fis {
			names = append(names, fi.Name())
		}
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return names, nil
}

// ReadFile implements file.FS.
func (f *FS) ReadFile(name string) ([]byte, error) { return f.readFile(context.Background(), name) }

func (f *FS) readFile(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := f.do(ctx, func(c *hdfs.Client) (err error) {
		b, err = c.ReadFile(name)
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Stat implements file.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) { return f.stat(context.Background(), name) }

func (f *FS) stat(ctx context.Context, name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := f.do(ctx, func(c *hdfs.Client) (err error) {
		fi, err = c.Stat(name)
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return fi, nil
}

// Remove implements file.FS. It removes a file under construction too,
// whoever holds its lease.
func (f *FS) Remove(name string) error { return f.remove(context.Background(), name) }

func (f *FS) remove(ctx context.Context, name string) error {
	return f.do(ctx, func(c *hdfs.Client) error { return c.Remove(name) }, nil)
}

// SyncDir implements file.FS: nothing to do, the NameNode logs every
// namespace change before it answers.
func (f *FS) SyncDir(string) error { return nil }

// Close closes the client: the leases of files still open end with it.
// It closes the NameNode connections first, so that calls a caller gave
// up on fail at once, and waits for them.
func (f *FS) Close() error {
	f.stop()
	f.cmu.Lock()
	f.closing = true
	conns := make([]*deadlineConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.cmu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	f.mu.Lock()
	f.closed = true
	c := f.c
	f.c = nil
	f.mu.Unlock()
	var err error
	if c != nil {
		err = c.Close()
	}
	f.calls.Wait()
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
	if h.deadline.IsZero() {
		return h.fileErr(h.close())
	}
	// Completing the file is a NameNode call: bounded by the deadline
	// like the namespace calls are by their ctx.
	ctx, cancel := context.WithDeadline(context.Background(), h.deadline)
	defer cancel()
	return h.fileErr(h.fs.bounded(ctx, h.close, nil))
}

func (h *hdfsFile) close() error {
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
	return err
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
// deadline of timeout from when it starts, and closes the connection when
// one fails: a reply that came too late must not be read as the answer to
// the next call, and the client dials again when its write fails.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	fs      *FS // nil in tests: the FS that tracks it
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		c.Close()
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.Close()
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		c.Close()
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.Close()
	}
	return n, err
}

// Close closes the connection; closing it again does nothing more.
func (c *deadlineConn) Close() error {
	if c.fs != nil {
		c.fs.untrack(c)
	}
	return c.Conn.Close()
}
