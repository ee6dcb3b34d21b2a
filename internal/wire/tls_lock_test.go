package wire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate and its key for cn.
func selfSigned(t *testing.T, dir, cn string) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// lockProbe is a slog handler that records, at each record, whether the
// certSource's mutex is held while the record is being written.
type lockProbe struct {
	src  **certSource
	held []string
}

func (h *lockProbe) Enabled(context.Context, slog.Level) bool { return true }
func (h *lockProbe) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *lockProbe) WithGroup(string) slog.Handler            { return h }
func (h *lockProbe) Handle(_ context.Context, r slog.Record) error {
	if s := *h.src; s != nil {
		if s.mu.TryLock() {
			s.mu.Unlock()
		} else {
			h.held = append(h.held, r.Message)
		}
	}
	return nil
}

// A certSource logs (and reads its files) without its lock: every
// handshake calls current, so a log writer that blocks (stderr piped to a
// stalled collector) or a slow file (NFS) must hold up only the handshake
// that looked, not all of them. An internal test: it makes its own
// certificates, since wiretest imports this package. (Found in review.)
func TestCertSourceLogsWithoutLock(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := selfSigned(t, dir, "one")
	c2, k2 := selfSigned(t, dir, "two")
	f := TLSFiles{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}
	write := func(c, k []byte) {
		if err := os.WriteFile(f.Cert, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.Key, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(c1, k1)
	var src *certSource
	probe := &lockProbe{src: &src}
	src, err := newCertSource(f, true, time.Now(), slog.New(probe), 0)
	if err != nil {
		t.Fatal(err)
	}
	write(c2, k1) // a half rotation: logged as not loading
	src.current(time.Now())
	write(c2, k2) // the rest: logged as in use
	if got := src.current(time.Now()).cert.Leaf.Subject.CommonName; got != "two" {
		t.Fatalf("serving %q, want two", got)
	}
	if len(probe.held) != 0 {
		t.Fatalf("logged with certSource.mu held (every handshake waits on the log writer): %q", probe.held)
	}
}
