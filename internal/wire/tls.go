package wire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
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
func ServerTLSConfig(f TLSFiles, now time.Time) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("wire: tls: a server needs a certificate and its key")
	}
	cert, err := loadKeyPair(f.Cert, f.Key, now)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLSConfig builds a client's TLS config from f, with the same
// checks as ServerTLSConfig. Cert and Key are optional (for mutual TLS)
// but go together.
func ClientTLSConfig(f TLSFiles, now time.Time) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("wire: tls: a client certificate needs its key, and a key its certificate")
	}
	if f.Cert != "" {
		cert, err := loadKeyPair(f.Cert, f.Key, now)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
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

func loadKeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("wire: tls: load %s and %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("wire: tls: %s: %w", certFile, err)
		}
	}
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
