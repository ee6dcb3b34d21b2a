package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"logship/internal/wire"
	"logship/logstore"
)

// Aggregator is the config of an aggregator: where it listens and where
// it keeps the log. Load it with LoadAggregator, or build it in code and
// call SetDefaults and Validate.
type Aggregator struct {
	ID            string   `toml:"id"`              // default: the host name and "-" and the listen port, sanitized like Agent.ID
	Listen        string   `toml:"listen"`          // required host:port for agents and sinks
	DataDir       string   `toml:"data_dir"`        // required, absolute: the log's directory
	Partitions    int      `toml:"partitions"`      // default 4; 1 to 1024 per topic
	Fsync         string   `toml:"fsync"`           // "always" (default), "interval" or "never": see logstore.FsyncPolicy
	FsyncInterval Duration `toml:"fsync_interval"`  // default 1s; only with fsync = "interval"
	SegmentBytes  Size     `toml:"segment_bytes"`   // default 1GiB; at least 1MiB, less than 4GiB
	MaxFrameBytes Size     `toml:"max_frame_bytes"` // default 16MiB; 64KiB to 64MiB
	MetricsListen string   `toml:"metrics_listen"`  // optional host:port for /metrics

	// The log's segments: see logstore.Options.
	SegmentAge      Duration `toml:"segment_age"`       // default 1h: roll a segment this long after its first batch
	RetentionAge    Duration `toml:"retention_age"`     // default 168h (7d): delete segments last appended to this long ago
	RetentionBytes  Size     `toml:"retention_bytes"`   // default 0: no limit; else per partition, at least segment_bytes
	MaxOpenSegments int      `toml:"max_open_segments"` // default 128; 1 to 65536 sealed segment files open at once

	// The transport: see config/tls.go and internal/wire.
	TLS         TLS      `toml:"tls"`          // [tls]: cert_file and key_file turn TLS on; ca_file, mutual TLS
	Tokens      []Token  `toml:"token"`        // [[token]]: none means no authentication
	IdleTimeout Duration `toml:"idle_timeout"` // default 2m: a connection that sends no frame for this long is closed
	ReadTimeout Duration `toml:"read_timeout"` // default 30s: a frame not complete this long after its first byte closes the connection
}

// Aggregator defaults and bounds.
const (
	defaultPartitions    = 4
	maxPartitions        = 1024
	defaultFsyncInterval = Duration(time.Second)
	defaultSegmentBytes  = GiB
	minSegmentBytes      = MiB
	maxSegmentBytes      = Size(logstore.MaxSegmentBytes) // 4GiB-1B: the index holds 32-bit positions
	defaultMaxFrameBytes = 16 * MiB
	minMaxFrameBytes     = 64 * KiB
	maxMaxFrameBytes     = 64 * MiB
	defaultSegmentAge    = Duration(time.Hour)
	defaultRetentionAge  = Duration(7 * 24 * time.Hour)
	defaultMaxOpenSegs   = 128
	defaultConnIdle      = Duration(2 * time.Minute)
	defaultConnRead      = Duration(30 * time.Second)
	maxMaxOpenSegs       = 65536
)

// LoadAggregator reads the aggregator config at path, applies defaults to
// the keys it leaves out, and validates it. A file that cannot be read is
// a plain error; every other problem is in an *Errors. A file of another
// kind is that one problem.
func LoadAggregator(path string) (*Aggregator, error) {
	f, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return loadKind[Aggregator](f, KindAggregator)
}

// SetDefaults sets every zero field of g to its default. The default ID
// comes from os.Hostname and g.Listen, so set Listen first.
func (g *Aggregator) SetDefaults() { g.setDefaults(isZero) }

func (g *Aggregator) setDefaults(u unsetFunc) {
	setDefault(u, "partitions", &g.Partitions, defaultPartitions)
	setDefault(u, "fsync", &g.Fsync, "always")
	setDefault(u, "fsync_interval", &g.FsyncInterval, defaultFsyncInterval)
	setDefault(u, "segment_bytes", &g.SegmentBytes, defaultSegmentBytes)
	setDefault(u, "max_frame_bytes", &g.MaxFrameBytes, defaultMaxFrameBytes)
	setDefault(u, "segment_age", &g.SegmentAge, defaultSegmentAge)
	setDefault(u, "retention_age", &g.RetentionAge, defaultRetentionAge)
	setDefault(u, "max_open_segments", &g.MaxOpenSegments, defaultMaxOpenSegs)
	setDefault(u, "idle_timeout", &g.IdleTimeout, defaultConnIdle)
	setDefault(u, "read_timeout", &g.ReadTimeout, defaultConnRead)
	if u("id", g.ID == "") {
		suffix := ""
		if _, port, err := net.SplitHostPort(g.Listen); err == nil {
			if _, err := strconv.Atoi(port); err == nil {
				suffix = "-" + port
			}
		}
		g.ID = hostID(suffix)
	}
}

// Validate reports every problem with g as an *Errors, or returns nil. It
// checks g as it is: call SetDefaults first to fill in unset fields.
func (g *Aggregator) Validate() error { return validate(g) }

func (g *Aggregator) checkFiles(c *checker, now time.Time) {
	_, err := g.TLS.ServerConfig(now, nil)
	c.loaded("tls", err)
	for i := range g.Tokens {
		_, err := g.Tokens[i].Secret()
		c.loaded(indexKey("token", i), err)
	}
}

func (g *Aggregator) check(c *checker) {
	c.name("id", "id", g.ID)
	if c.required("listen", g.Listen) {
		c.address("listen", g.Listen, false)
	}
	c.absDir("data_dir", g.DataDir)
	if g.Partitions < 1 || g.Partitions > maxPartitions {
		c.errorf("partitions", "%d is out of range: want 1 to %d", g.Partitions, maxPartitions)
	}
	c.oneOf("fsync", g.Fsync, "always", "interval", "never")
	positive(c, "fsync_interval", g.FsyncInterval)
	if c.given["fsync_interval"] && (g.Fsync == "always" || g.Fsync == "never") {
		c.add("fsync_interval", fmt.Sprintf("fsync_interval: only used with fsync = \"interval\", not %q", g.Fsync))
	}
	if g.SegmentBytes < minSegmentBytes || g.SegmentBytes > maxSegmentBytes {
		c.errorf("segment_bytes", "%v is out of range: want at least %v and less than 4GiB", g.SegmentBytes, minSegmentBytes)
	}
	c.sizeRange("max_frame_bytes", g.MaxFrameBytes, minMaxFrameBytes, maxMaxFrameBytes)
	positive(c, "segment_age", g.SegmentAge)
	positive(c, "retention_age", g.RetentionAge)
	if g.RetentionBytes != 0 && g.RetentionBytes < g.SegmentBytes {
		// Less would delete every sealed segment as soon as it is sealed.
		c.errorf("retention_bytes", "%v is less than segment_bytes (%v): want 0 (no limit) or at least segment_bytes", g.RetentionBytes, g.SegmentBytes)
	}
	if g.MaxOpenSegments < 1 || g.MaxOpenSegments > maxMaxOpenSegs {
		c.errorf("max_open_segments", "%d is out of range: want 1 to %d", g.MaxOpenSegments, maxMaxOpenSegs)
	}
	if g.MetricsListen != "" {
		c.address("metrics_listen", g.MetricsListen, false)
	}
	g.TLS.check(c, true)
	checkTokens(c, g.Tokens)
	positive(c, "idle_timeout", g.IdleTimeout)
	if g.IdleTimeout > 0 && g.IdleTimeout < Duration(wire.MinIdleTimeout) {
		// Shorter would cut live idle agents between their heartbeats.
		c.errorf("idle_timeout", "%v is too short: want at least %v (an idle agent sends a heartbeat every %v)",
			g.IdleTimeout, Duration(wire.MinIdleTimeout), Duration(wire.HeartbeatInterval))
	}
	positive(c, "read_timeout", g.ReadTimeout)
}
