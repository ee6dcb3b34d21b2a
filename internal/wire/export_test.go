package wire

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// ServerTLSConfigEvery and ClientTLSConfigEvery let tests look at the
// files at every handshake (every 0) instead of once a second.
func ServerTLSConfigEvery(f TLSFiles, now time.Time, log *slog.Logger, every time.Duration) (*tls.Config, error) {
	return serverTLSConfig(f, now, log, every)
}

func ClientTLSConfigEvery(f TLSFiles, now time.Time, log *slog.Logger, every time.Duration) (*tls.Config, error) {
	return clientTLSConfig(f, now, log, every)
}

// Ahead is how many bytes of the next frame's header the last large
// payload's readv brought in.
func (c *Conn) Ahead() int { return c.aheadN }
