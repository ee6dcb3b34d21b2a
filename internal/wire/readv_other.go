//go:build !linux

package wire

import "net"

// vreader is Linux only; elsewhere large payloads are read through the
// Conn's bufio.Reader.
type vreader struct{}

func newVReader(net.Conn) *vreader { return nil }

func (*vreader) fill(p, next []byte) (int, error) { panic("BUG: no vreader") }

func (*vreader) queued() int { panic("BUG: no vreader") }
