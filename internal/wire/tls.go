package wire

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// TLSFiles names the PEM files of one side of a TLS connection.
type TLSFiles struct {
	Cert string // certificate chain presented to the peer; required on a server, for mutual TLS on a client
	Key  string // private key of Cert
	// CA: on a client, the CAs trusted to sign the server's certificate
	// (empty: the system's roots); on a server, the CAs trusted to sign
	// clients' certificates, which turns mutual TLS on: a client without
	// a certificate signed by one of them is refused.
	CA         string
	ServerName string // client only: the name the server's certificate must carry; default the dialled host
}

// ServerTLSConfig builds a server's TLS config from f. It fails, naming the
// file, when a file cannot be read or parsed, when the key does not match
// the certificate, or when the certificate has expired or is not valid yet.
//
// The files are read again at a handshake when one of them changed (looked
// at no more than once a second), so that a rotated certificate, key or
// client CA is used from the next connection on, without a restart; the
// connections already open keep theirs. Rotated files that do not load
// (a key that does not match the certificate yet, a certificate expired or
// not valid yet, a file half written) leave the previous ones in use and
// are tried again at each look; log says so, once per change, and says
// when new ones are in use. log nil: no logging.
func ServerTLSConfig(f TLSFiles, now time.Time, log *slog.Logger) (*tls.Config, error) {
	return serverTLSConfig(f, now, log, time.Second)
}

// serverTLSConfig is ServerTLSConfig looking at the files at most every
// so often.
func serverTLSConfig(f TLSFiles, now time.Time, log *slog.Logger, every time.Duration) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("wire: tls: a server needs a certificate and its key")
	}
	src, err := newCertSource(f, true, now, log, every)
	if err != nil {
		return nil, err
	}
	cfg := src.current(now).cfg.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return src.current(time.Now()).cfg, nil
	}
	return cfg, nil
}

// ClientTLSConfig builds a client's TLS config from f, with the same
// checks as ServerTLSConfig. Cert and Key are optional (for mutual TLS)
// but go together. A client certificate and its key are read again when
// they change, as ServerTLSConfig does; the CAs trusted to sign the
// server's certificate are read once.
func ClientTLSConfig(f TLSFiles, now time.Time, log *slog.Logger) (*tls.Config, error) {
	return clientTLSConfig(f, now, log, time.Second)
}

// clientTLSConfig is ClientTLSConfig looking at the files at most every so
// often.
func clientTLSConfig(f TLSFiles, now time.Time, log *slog.Logger, every time.Duration) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("wire: tls: a client certificate needs its key, and a key its certificate")
	}
	if f.Cert != "" {
		src, err := newCertSource(TLSFiles{Cert: f.Cert, Key: f.Key}, false, now, log, every)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*src.current(now).cert}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.current(time.Now()).cert, nil
		}
	}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// certSource holds what one side's TLS files hold, and loads them again
// when they change. Safe for concurrent use (handshakes run on the
// connections' goroutines).
//
// A change is a change of the files' bytes: they are small, and reading
// them once a second sees what a look at modification times would miss (a
// symbolic link swapped to files of the same size and time, as Kubernetes
// does with secrets, or files copied with their times kept). Only their
// hashes are kept between looks.
//
// The handshake that finds a look due reads, parses and logs without the
// lock; the others meanwhile get what is loaded, so that a slow file (NFS)
// or a log writer that blocks holds up that one handshake only.
type certSource struct {
	files  TLSFiles
	server bool // a server's CA file holds the client CAs (mutual TLS)
	log    *slog.Logger
	every  time.Duration // how often at most the files are looked at

	mu      sync.Mutex
	loaded  *certSet
	checked time.Time  // when the files were last looked at
	looking bool       // a handshake is looking at them
	tried   []fileHash // the files as last tried, loaded or not
	// failed: the last try did not load. The same bytes are tried again
	// at each look, without a word: a certificate that is not valid yet
	// becomes valid without changing.
	failed bool
}

// certSet is one load of the files.
type certSet struct {
	cert *tls.Certificate
	cfg  *tls.Config // a server's config for these files
}

// fileRead is a file's bytes, or why they could not be read.
type fileRead struct {
	data []byte
	err  error
}

// fileHash is what tells a fileRead from another.
type fileHash struct {
	sum [sha256.Size]byte
	err string
}

func hashes(files []fileRead) []fileHash {
	out := make([]fileHash, len(files))
	for i, f := range files {
		if f.err != nil {
			out[i].err = f.err.Error()
			continue
		}
		out[i].sum = sha256.Sum256(f.data)
	}
	return out
}

func newCertSource(f TLSFiles, server bool, now time.Time, log *slog.Logger, every time.Duration) (*certSource, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &certSource{files: f, server: server, log: log, every: every}
	files := s.read()
	set, err := s.load(now, files)
	if err != nil {
		return nil, err
	}
	s.loaded, s.checked, s.tried = set, now, hashes(files)
	return s, nil
}

// read reads the files: the certificate, its key and, on a server, the
// client CAs.
func (s *certSource) read() []fileRead {
	paths := []string{s.files.Cert, s.files.Key}
	if s.server && s.files.CA != "" {
		paths = append(paths, s.files.CA)
	}
	out := make([]fileRead, len(paths))
	for i, p := range paths {
		out[i].data, out[i].err = os.ReadFile(p)
	}
	return out
}

// load parses what read returned, with the checks ServerTLSConfig lists.
func (s *certSource) load(now time.Time, files []fileRead) (*certSet, error) {
	for _, f := range files {
		if f.err != nil {
			return nil, fmt.Errorf("wire: tls: %w", f.err)
		}
	}
	cert, err := keyPair(files[0].data, files[1].data, s.files.Cert, s.files.Key, now)
	if err != nil {
		return nil, err
	}
	set := &certSet{cert: &cert}
	if s.server {
		set.cfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if s.files.CA != "" {
			pool, err := caPool(files[2].data, s.files.CA)
			if err != nil {
				return nil, err
			}
			set.cfg.ClientCAs = pool
			set.cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return set, nil
}

// current returns what the files hold now: it looks at them when nobody
// has for s.every, and loads them when they changed since they were last
// tried, or when that try failed.
func (s *certSource) current(now time.Time) *certSet {
	s.mu.Lock()
	if s.looking || now.Sub(s.checked) < s.every {
		defer s.mu.Unlock()
		return s.loaded
	}
	s.checked, s.looking = now, true
	tried, failed := s.tried, s.failed
	s.mu.Unlock()

	files := s.read()
	sums := hashes(files)
	changed := !slices.Equal(sums, tried)
	var set *certSet
	var err error
	if changed || failed {
		set, err = s.load(now, files)
	}

	s.mu.Lock()
	s.looking = false
	if changed || failed {
		s.tried, s.failed = sums, err != nil
		if err == nil {
			s.loaded = set
		}
	}
	cur := s.loaded
	s.mu.Unlock()

	switch {
	case err != nil && changed:
		s.log.Error("tls: the changed certificate files do not load; still using the previous ones",
			"cert", s.files.Cert, "key", s.files.Key, "ca", s.files.CA, "err", err)
	case set != nil:
		leaf := set.cert.Leaf
		s.log.Info("tls: certificate files changed; new connections use them",
			"cert", s.files.Cert, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return cur
}

// keyPair parses a certificate and its key, read from the files named, and
// checks that the certificate is valid at now.
func keyPair(certPEM, keyPEM []byte, certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("wire: tls: load %s and %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("wire: tls: %s: %w", certFile, err)
		}
	}
	leaf := cert.Leaf
	switch {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, fmt.Errorf("wire: tls: certificate %s (%s) expired at %s", certFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, fmt.Errorf("wire: tls: certificate %s (%s) is not valid before %s", certFile, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wire: tls: %w", err)
	}
	return caPool(pem, path)
}

// caPool parses the CA certificates read from path.
func caPool(pem []byte, path string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("wire: tls: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// DescribeTLSError returns err with a sentence saying what a failed TLS
// handshake means for the operator: whose certificate was refused and why,
// or that the peer refused ours, or that the peer does not speak TLS.
// server tells which side is asking (true: the aggregator, judging a
// client's certificate). The cause stays in the chain (errors.As works).
func DescribeTLSError(err error, server bool) error {
	whose := "the aggregator's certificate"
	if server {
		whose = "the client's certificate"
	}
	var (
		verr   *tls.CertificateVerificationError
		invErr x509.CertificateInvalidError
		unkErr x509.UnknownAuthorityError
		hstErr x509.HostnameError
		recErr tls.RecordHeaderError
		opErr  *net.OpError
	)
	switch {
	case errors.As(err, &invErr) && invErr.Reason == x509.Expired:
		c := invErr.Cert
		return fmt.Errorf("%s (%s) is expired or not valid yet: valid from %s to %s: %w", whose, c.Subject,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), err)
	case errors.As(err, &unkErr):
		subj := "?"
		if unkErr.Cert != nil {
			subj = unkErr.Cert.Subject.String()
		}
		return fmt.Errorf("%s (%s) is not signed by a trusted CA (check ca_file): %w", whose, subj, err)
	case errors.As(err, &hstErr):
		return fmt.Errorf("%s does not name %q (check server_name): %w", whose, hstErr.Host, err)
	case errors.As(err, &verr):
		return fmt.Errorf("%s was refused: %w", whose, err)
	case errors.As(err, &recErr):
		return fmt.Errorf("the peer does not speak TLS (turn tls on at both ends or at neither): %w", err)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		mine := "this client's certificate"
		if server {
			mine = "this aggregator's certificate"
		}
		return fmt.Errorf("the peer refused the TLS handshake (is %s missing, expired or signed by a CA the peer does not trust?): %w", mine, err)
	}
	return err
}
