package wire_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"logship/internal/testlogs"
	"logship/internal/wire"
	"logship/internal/wire/wiretest"
)

// logBuf is a slog destination that handshakes on other goroutines may
// write to.
type logBuf = testlogs.Buffer

// take returns what was logged since the last take.

// install puts the PEM files src in place of dst, each by a rename, the way
// a rotation tool replaces them.
func install(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func pool(t *testing.T, cas ...*wiretest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// tlsServer accepts TLS connections with cfg, completes each handshake and
// records the common name of the client's certificate ("" without one).
type tlsServer struct {
	ln      net.Listener
	clients chan string
}

func serveTLS(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln, clients: make(chan string, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			cn := ""
			if err := tc.Handshake(); err == nil {
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					cn = pc[0].Subject.CommonName
				}
			} else {
				cn = "refused: " + err.Error()
			}
			c.Close()
			s.clients <- cn
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

// dial completes a handshake with the server and returns the common name
// of the server's certificate, and what the server saw of the client.
func (s *tlsServer) dial(t *testing.T, cfg *tls.Config) (server, client string) {
	t.Helper()
	c, err := tls.Dial("tcp", s.ln.Addr().String(), cfg)
	if err == nil {
		server = c.ConnectionState().PeerCertificates[0].Subject.CommonName
		// TLS 1.3: the server judges the client's certificate after the
		// client's handshake is done; its verdict arrives with a read.
		c.Read(make([]byte, 1))
		c.Close()
	}
	return server, <-s.clients
}

// A server's certificate rotated on disk is served from the next handshake
// on, without a restart; rotated files that do not load leave the previous
// certificate in use, and the log says so once per change.
func TestServerCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	ca := wiretest.NewCA(t, dir, "ca")
	leaf := func(name string) wire.TLSFiles {
		return ca.Issue(t, wiretest.Leaf{Name: name, Hosts: []string{"127.0.0.1"}})
	}
	s1, s2, s3 := leaf("srv-1"), leaf("srv-2"), leaf("srv-3")
	expired := ca.Issue(t, wiretest.Leaf{Name: "srv-old", Hosts: []string{"127.0.0.1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	live := wire.TLSFiles{Cert: filepath.Join(dir, "live.pem"), Key: filepath.Join(dir, "live-key.pem")}
	install(t, s1.Cert, live.Cert)
	install(t, s1.Key, live.Key)

	var logs logBuf
	cfg, err := wire.ServerTLSConfigEvery(live, time.Now(), slog.New(slog.NewTextHandler(&logs, nil)), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, cfg)
	client := &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}
	served := func() string { s, _ := srv.dial(t, client); return s }

	steps := []struct {
		name      string
		cert, key string // installed, "" for none
		want      string // the certificate served after
		log       string // what the log says, "" for nothing
	}{
		{"unchanged", "", "", "srv-1", ""},
		{"rotated", s2.Cert, s2.Key, "srv-2", "certificate files changed"},
		{"unchanged again", "", "", "srv-2", ""},
		{"cert before its key", s3.Cert, "", "srv-2", "do not load"},
		{"same half rotation, logged once", "", "", "srv-2", ""},
		{"then its key", "", s3.Key, "srv-3", "certificate files changed"},
		{"expired", expired.Cert, expired.Key, "srv-3", "expired at"},
	}
	for _, st := range steps {
		if st.cert != "" {
			install(t, st.cert, live.Cert)
		}
		if st.key != "" {
			install(t, st.key, live.Key)
		}
		if got := served(); got != st.want {
			t.Fatalf("%s: served %q, want %q", st.name, got, st.want)
		}
		got := logs.Take()
		if st.log == "" && got != "" || !strings.Contains(got, st.log) {
			t.Fatalf("%s: logged %q, want %q", st.name, got, st.log)
		}
	}
}

// Mutual TLS: the CAs a server trusts for clients are read again when
// their file changes, and a client's own certificate too.
func TestClientCARotation(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := wiretest.NewCA(t, dir, "ca-1"), wiretest.NewCA(t, dir, "ca-2")
	server := ca1.Issue(t, wiretest.Leaf{Name: "srv", Hosts: []string{"127.0.0.1"}})
	c1 := ca1.Issue(t, wiretest.Leaf{Name: "client-1"})
	c2 := ca2.Issue(t, wiretest.Leaf{Name: "client-2"})
	liveCA := filepath.Join(dir, "clients-ca.pem")
	install(t, ca1.File, liveCA)
	cfg, err := wire.ServerTLSConfigEvery(wire.TLSFiles{Cert: server.Cert, Key: server.Key, CA: liveCA}, time.Now(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, cfg)

	// The client's certificate rotates too: from client-1 to client-2.
	live := wire.TLSFiles{Cert: filepath.Join(dir, "me.pem"), Key: filepath.Join(dir, "me-key.pem"), CA: ca1.File, ServerName: "127.0.0.1"}
	install(t, c1.Cert, live.Cert)
	install(t, c1.Key, live.Key)
	ccfg, err := wire.ClientTLSConfigEvery(live, time.Now(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, seen := srv.dial(t, ccfg); seen != "client-1" {
		t.Fatalf("server saw %q, want client-1", seen)
	}
	install(t, c2.Cert, live.Cert)
	install(t, c2.Key, live.Key)
	if _, seen := srv.dial(t, ccfg); !strings.HasPrefix(seen, "refused") {
		t.Fatalf("a client certificate of a CA the server does not trust yet: server saw %q", seen)
	}
	install(t, ca2.File, liveCA)
	if _, seen := srv.dial(t, ccfg); seen != "client-2" {
		t.Fatalf("after the server's CA file changed: server saw %q, want client-2", seen)
	}
}

// pipeHandshake runs one TLS handshake over a loopback TCP connection
// (net.Pipe has no buffer: a client's alert and the server's flight block
// each other) and returns the common name of the server's certificate.
// Inside a synctest bubble nothing is left blocked on the network when it
// returns, so time.Sleep moves the fake clock.
func pipeHandshake(scfg, ccfg *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return "", err
	}
	c2, err := ln.Accept()
	ln.Close()
	if err != nil {
		c1.Close()
		return "", err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Server(c2, scfg).Handshake()
		c2.Close()
	}()
	c := tls.Client(c1, ccfg)
	err = c.Handshake()
	cn := ""
	if err == nil {
		cn = c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Read(make([]byte, 1)) // take the session tickets, then EOF
	}
	c1.Close()
	<-done
	return cn, err
}

// A rotated certificate that is not valid yet when it is first seen (its
// CA's clock a few minutes ahead) is tried again until it is, although its
// files do not change any more: the server does not go on serving the old
// certificate past its expiry. Production settings (ServerTLSConfig, once
// a second); synctest moves the clock. (Found in review: the files were
// tried once per change.)
func TestRotationNotValidYet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		ca := wiretest.NewCA(t, dir, "ca")
		now := time.Now()
		hosts := []string{"127.0.0.1"}
		old := ca.Issue(t, wiretest.Leaf{Name: "srv-old", Hosts: hosts, NotAfter: now.Add(30 * time.Minute)})
		next := ca.Issue(t, wiretest.Leaf{Name: "srv-next", Hosts: hosts, NotBefore: now.Add(2 * time.Minute)})
		live := wire.TLSFiles{Cert: filepath.Join(dir, "live.pem"), Key: filepath.Join(dir, "live-key.pem")}
		install(t, old.Cert, live.Cert)
		install(t, old.Key, live.Key)
		scfg, err := wire.ServerTLSConfig(live, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ccfg := &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}

		install(t, next.Cert, live.Cert)
		install(t, next.Key, live.Key)
		time.Sleep(2 * time.Second)
		if cn, err := pipeHandshake(scfg, ccfg); cn != "srv-old" {
			t.Fatalf("before srv-next is valid: served %q (%v), want srv-old", cn, err)
		}
		time.Sleep(10 * time.Minute) // srv-next is valid now
		if cn, err := pipeHandshake(scfg, ccfg); cn != "srv-next" {
			t.Errorf("10 minutes after srv-next became valid: served %q (err %v), want srv-next", cn, err)
		}
		time.Sleep(30 * time.Minute) // srv-old has expired
		if cn, err := pipeHandshake(scfg, ccfg); cn != "srv-next" {
			t.Errorf("after srv-old expired: served %q, want srv-next: %v", cn, err)
		}
	})
}

// A rotation that swaps a symbolic link to another version of the files
// (Kubernetes' ..data, `ln -sfn v2 current`) is seen even when the new
// files have the same sizes and modification times as the old ones: a
// P-256 key's PEM always has the same size, certificates of one CA for one
// name mostly do too, and times are kept by cp -p, rsync -t, archives and
// the Nix store. (Found in review: changes were told by size and time.)
func TestRotationSymlinkSwapSameSizeAndTime(t *testing.T) {
	dir := t.TempDir()
	ca := wiretest.NewCA(t, dir, "ca")
	hosts := []string{"127.0.0.1"}
	v1 := ca.Issue(t, wiretest.Leaf{Name: "srv-1", Hosts: hosts})
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var v2 wire.TLSFiles
	for i := 0; ; i++ { // same-length names: usually the same size at once
		v2 = ca.Issue(t, wiretest.Leaf{Name: "srv-2", Hosts: hosts})
		if size(v2.Cert) == size(v1.Cert) && size(v2.Key) == size(v1.Key) {
			break
		}
		if i == 100 {
			t.Fatal("no certificate of the same size")
		}
	}
	// Two versions, each in its own directory, with the store's fixed mtime.
	fixed := time.Unix(1, 0)
	for name, f := range map[string]wire.TLSFiles{"v1": v1, "v2": v2} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{f.Cert: "tls.crt", f.Key: "tls.key"} {
			p := filepath.Join(dir, name, dst)
			install(t, src, p)
			if err := os.Chtimes(p, fixed, fixed); err != nil {
				t.Fatal(err)
			}
		}
	}
	current := filepath.Join(dir, "current")
	swap := func(to string) {
		if err := os.Symlink(to, current+".tmp"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(current+".tmp", current); err != nil {
			t.Fatal(err)
		}
	}
	swap("v1")
	live := wire.TLSFiles{Cert: filepath.Join(current, "tls.crt"), Key: filepath.Join(current, "tls.key")}
	cfg, err := wire.ServerTLSConfigEvery(live, time.Now(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, cfg)
	client := &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}
	if got, _ := srv.dial(t, client); got != "srv-1" {
		t.Fatalf("served %q, want srv-1", got)
	}
	swap("v2")
	if got, _ := srv.dial(t, client); got != "srv-2" {
		t.Fatalf("after the link was swapped to v2: served %q, want srv-2", got)
	}
}
