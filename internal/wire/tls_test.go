package wire_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"logship/internal/wire"
	"logship/internal/wire/wiretest"
)

// TestTLSConfigErrors: a config that cannot work is refused at load, with
// a message naming the file and the reason.
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := wiretest.NewCA(t, dir, "ca")
	good := ca.Issue(t, wiretest.Leaf{Name: "server", Hosts: []string{"127.0.0.1"}})
	expired := ca.Issue(t, wiretest.Leaf{Name: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	future := ca.Issue(t, wiretest.Leaf{Name: "future", NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	other := ca.Issue(t, wiretest.Leaf{Name: "other"})
	notPEM := dir + "/junk.pem"
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		server bool
		f      wire.TLSFiles
		want   string
	}{
		{"server without cert", true, wire.TLSFiles{}, "needs a certificate and its key"},
		{"expired", true, wire.TLSFiles{Cert: expired.Cert, Key: expired.Key}, "old.pem (CN=old) expired at"},
		{"not yet valid", false, wire.TLSFiles{Cert: future.Cert, Key: future.Key}, "is not valid before"},
		{"wrong key", true, wire.TLSFiles{Cert: good.Cert, Key: other.Key}, "private key does not match public key"},
		{"missing file", true, wire.TLSFiles{Cert: dir + "/nope.pem", Key: good.Key}, "no such file"},
		{"ca not pem", true, wire.TLSFiles{Cert: good.Cert, Key: good.Key, CA: notPEM}, "junk.pem holds no PEM certificate"},
		{"client cert without key", false, wire.TLSFiles{Cert: good.Cert}, "needs its key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.server {
				_, err = wire.ServerTLSConfig(tc.f, now, nil)
			} else {
				_, err = wire.ClientTLSConfig(tc.f, now, nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := wire.ServerTLSConfig(good, now, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ClientTLSConfig(wire.TLSFiles{CA: ca.File}, now, nil); err != nil {
		t.Fatal(err)
	}
}
