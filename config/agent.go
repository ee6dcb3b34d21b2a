package config

import (
	"fmt"
	"regexp"
	"runtime"
	"time"
)

// Agent is the config of an agent: which files to ship, as which topics,
// to which aggregators. Load it with LoadAgent, or build it in code and
// call SetDefaults and Validate.
type Agent struct {
	ID                string   `toml:"id"`                 // default: the host name, with characters outside [A-Za-z0-9._-] replaced by '-'
	StateDir          string   `toml:"state_dir"`          // required, absolute: positions and other state
	Aggregators       []string `toml:"aggregators"`        // required: host:port of each aggregator
	Compression       string   `toml:"compression"`        // "zstd" (default), "s2" or "none"
	Compressors       int      `toml:"compressors"`        // default: the number of CPUs (GOMAXPROCS); 1 to 256 goroutines compressing batches in parallel
	BatchBytes        Size     `toml:"batch_bytes"`        // default 256KiB; 1KiB to 8MiB
	BatchWait         Duration `toml:"batch_wait"`         // default 200ms: how long a partly filled batch may wait
	WindowBytes       Size     `toml:"window_bytes"`       // default 16MiB: unacknowledged bytes per connection; at least batch_bytes
	ScanInterval      Duration `toml:"scan_interval"`      // default 1s: how often globs are evaluated again
	PollInterval      Duration `toml:"poll_interval"`      // default 250ms: how often idle files are checked for new data
	PositionsInterval Duration `toml:"positions_interval"` // default 1s: how often acknowledged positions are written
	MaxOpenFiles      int      `toml:"max_open_files"`     // default 1024: files held open at once; more wait
	DrainTimeout      Duration `toml:"drain_timeout"`      // default 24h: how long a rotated or deleted file is kept open to be drained; the rest is given up, logged and counted
	MaxLineBytes      Size     `toml:"max_line_bytes"`     // default 1MiB; 1KiB to 8MiB: a longer line is cut into records of this size, counted
	PartialTimeout    Duration `toml:"partial_timeout"`    // default 5s: how long a last line without its newline is held back before it is shipped as it is
	MetricsListen     string   `toml:"metrics_listen"`     // optional host:port for /metrics
	TLS               TLS      `toml:"tls"`                // [tls] to the aggregators (config/tls.go)
	ClientAuth                 // token or token_file (config/tls.go)
	Inputs            []Input  `toml:"input"` // at least one [[input]]
}

// Input is one [[input]] table of an agent: files of one topic.
type Input struct {
	Topic   string   `toml:"topic"`    // required; a batch.ValidName
	Paths   []string `toml:"paths"`    // required: absolute filepath.Match globs
	Exclude []string `toml:"exclude"`  // optional globs of files to leave out, like paths
	StartAt string   `toml:"start_at"` // "beginning" (default) or "end": where to start in a file seen for the first time
	// IgnoreOlder skips files seen for the first time whose last change is
	// older than this; unset: none are skipped.
	IgnoreOlder Duration  `toml:"ignore_older"`
	Multiline   Multiline `toml:"multiline"` // optional: join lines into records
}

// Multiline is the [input.multiline] table of an input: lines joined into
// one record (a Java stack trace). It is in use when Pattern is set.
type Multiline struct {
	Pattern  string   `toml:"pattern"`   // required in the table: an RE2 regular expression
	Match    string   `toml:"match"`     // "start" (default): a matching line starts a record; "continuation": a matching line continues one
	Negate   bool     `toml:"negate"`    // invert the match
	MaxLines int      `toml:"max_lines"` // default 500: a longer record is cut, counted
	MaxBytes Size     `toml:"max_bytes"` // default max_line_bytes; at most 8MiB
	Timeout  Duration `toml:"timeout"`   // default 1s: how long the last record of a file waits for the line that ends it
}

// Agent defaults and bounds.
const (
	defaultBatchBytes        = 256 * KiB
	defaultBatchWait         = Duration(200 * time.Millisecond)
	defaultWindowBytes       = 16 * MiB
	defaultScanInterval      = Duration(time.Second)
	defaultPollInterval      = Duration(250 * time.Millisecond)
	defaultPositionsInterval = Duration(time.Second)
	minBatchBytes            = KiB
	maxCompressors           = 256
	maxBatchBytes            = 8 * MiB // the agent's own limit (agent.maxBatchBytes); well below the aggregator's default max_frame_bytes
	defaultMaxOpenFiles      = 1024
	defaultDrainTimeout      = Duration(24 * time.Hour)
	defaultMaxLineBytes      = MiB
	defaultPartialTimeout    = Duration(5 * time.Second)
	minMaxLineBytes          = KiB
	maxMaxLineBytes          = 8 * MiB // the agent's own limit
	defaultMultilineLines    = 500
	defaultMultilineTimeout  = Duration(time.Second)
)

// LoadAgent reads the agent config at path, applies defaults to the keys
// it leaves out, and validates it. A file that cannot be read is a plain
// error; every other problem is in an *Errors. A file of another kind is
// that one problem.
func LoadAgent(path string) (*Agent, error) {
	f, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return loadKind[Agent](f, KindAgent)
}

// SetDefaults sets every zero field of a, and of its inputs, to its
// default. The default ID comes from os.Hostname.
func (a *Agent) SetDefaults() { a.setDefaults(isZero) }

func (a *Agent) setDefaults(u unsetFunc) {
	if u("id", a.ID == "") {
		a.ID = hostID("")
	}
	setDefault(u, "compression", &a.Compression, "zstd")
	setDefault(u, "compressors", &a.Compressors, runtime.GOMAXPROCS(0))
	setDefault(u, "batch_bytes", &a.BatchBytes, defaultBatchBytes)
	setDefault(u, "batch_wait", &a.BatchWait, defaultBatchWait)
	setDefault(u, "window_bytes", &a.WindowBytes, defaultWindowBytes)
	setDefault(u, "scan_interval", &a.ScanInterval, defaultScanInterval)
	setDefault(u, "poll_interval", &a.PollInterval, defaultPollInterval)
	setDefault(u, "positions_interval", &a.PositionsInterval, defaultPositionsInterval)
	setDefault(u, "max_open_files", &a.MaxOpenFiles, defaultMaxOpenFiles)
	setDefault(u, "drain_timeout", &a.DrainTimeout, defaultDrainTimeout)
	setDefault(u, "max_line_bytes", &a.MaxLineBytes, defaultMaxLineBytes)
	setDefault(u, "partial_timeout", &a.PartialTimeout, defaultPartialTimeout)
	for i := range a.Inputs {
		a.Inputs[i].setDefaults(within(u, indexKey("input", i)), a.MaxLineBytes)
	}
}

func (in *Input) setDefaults(u unsetFunc, maxLine Size) {
	setDefault(u, "start_at", &in.StartAt, "beginning")
	if in.Multiline.Pattern != "" {
		m, mu := &in.Multiline, within(u, "multiline")
		setDefault(mu, "match", &m.Match, "start")
		setDefault(mu, "max_lines", &m.MaxLines, defaultMultilineLines)
		setDefault(mu, "max_bytes", &m.MaxBytes, maxLine)
		setDefault(mu, "timeout", &m.Timeout, defaultMultilineTimeout)
	}
}

// Validate reports every problem with a as an *Errors, or returns nil. It
// checks a as it is: call SetDefaults first to fill in unset fields.
func (a *Agent) Validate() error { return validate(a) }

func (a *Agent) check(c *checker) {
	c.name("id", "id", a.ID)
	c.absDir("state_dir", a.StateDir)
	c.addresses("aggregators", a.Aggregators)
	c.oneOf("compression", a.Compression, "zstd", "s2", "none")
	if a.Compressors < 1 || a.Compressors > maxCompressors {
		c.errorf("compressors", "must be 1 to %d, got %d", maxCompressors, a.Compressors)
	}
	c.sizeRange("batch_bytes", a.BatchBytes, minBatchBytes, maxBatchBytes)
	positive(c, "batch_wait", a.BatchWait)
	positive(c, "window_bytes", a.WindowBytes)
	if a.WindowBytes > 0 && a.WindowBytes < a.BatchBytes && a.BatchBytes <= maxBatchBytes {
		// Point at whichever of the two the user wrote.
		at, dflt := "window_bytes", ""
		if c.given != nil && !c.given[at] {
			at, dflt = "batch_bytes", " (the default)"
		}
		c.add(at, fmt.Sprintf("window_bytes: %v%s is smaller than batch_bytes (%v)", a.WindowBytes, dflt, a.BatchBytes))
	}
	positive(c, "scan_interval", a.ScanInterval)
	positive(c, "poll_interval", a.PollInterval)
	positive(c, "positions_interval", a.PositionsInterval)
	if a.MaxOpenFiles < 1 {
		c.errorf("max_open_files", "must be at least 1, got %d", a.MaxOpenFiles)
	}
	positive(c, "drain_timeout", a.DrainTimeout)
	c.sizeRange("max_line_bytes", a.MaxLineBytes, minMaxLineBytes, maxMaxLineBytes)
	positive(c, "partial_timeout", a.PartialTimeout)
	if a.MetricsListen != "" {
		c.address("metrics_listen", a.MetricsListen, false)
	}
	a.TLS.check(c, false)
	a.ClientAuth.check(c)
	if c.tables("input", len(a.Inputs)) {
		for i := range a.Inputs {
			a.Inputs[i].check(c, indexKey("input", i))
		}
	}
}

func (a *Agent) checkFiles(c *checker, now time.Time) {
	_, err := a.TLS.ClientConfig(now, nil)
	c.loaded("tls", err)
	_, err = a.ClientAuth.Secret()
	c.loaded("", err)
}

func (in *Input) check(c *checker, at string) {
	c.name(at+".topic", "topic", in.Topic)
	if c.nonEmpty(at+".paths", len(in.Paths), "path") {
		c.globs(at+".paths", in.Paths)
	}
	c.globs(at+".exclude", in.Exclude)
	c.oneOf(at+".start_at", in.StartAt, "beginning", "end")
	if c.given[at+".ignore_older"] {
		positive(c, at+".ignore_older", in.IgnoreOlder)
	} else if in.IgnoreOlder < 0 {
		c.errorf(at+".ignore_older", "must not be negative, got %v", in.IgnoreOlder)
	}
	m, mk := &in.Multiline, at+".multiline"
	if m.Pattern == "" {
		if c.given[mk] {
			c.required(mk+".pattern", "")
		}
		return
	}
	if _, err := regexp.Compile(m.Pattern); err != nil {
		c.errorf(mk+".pattern", "invalid regular expression %q: %v", m.Pattern, err)
	}
	c.oneOf(mk+".match", m.Match, "start", "continuation")
	if m.MaxLines < 1 {
		c.errorf(mk+".max_lines", "must be at least 1, got %d", m.MaxLines)
	}
	c.sizeRange(mk+".max_bytes", m.MaxBytes, 1, maxMaxLineBytes)
	positive(c, mk+".timeout", m.Timeout)
}
