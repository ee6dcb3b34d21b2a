package config

import (
	"fmt"
	"time"
)

// Agent is the config of an agent: which files to ship, as which topics,
// to which aggregators. Load it with LoadAgent, or build it in code and
// call SetDefaults and Validate.
type Agent struct {
	ID                string   `toml:"id"`                 // default: the host name, with characters outside [A-Za-z0-9._-] replaced by '-'
	StateDir          string   `toml:"state_dir"`          // required: positions and other state
	Aggregators       []string `toml:"aggregators"`        // required: host:port of each aggregator
	Compression       string   `toml:"compression"`        // "zstd" (default), "s2" or "none"
	BatchBytes        Size     `toml:"batch_bytes"`        // default 256KiB; 1KiB to 8MiB
	BatchWait         Duration `toml:"batch_wait"`         // default 200ms: how long a partly filled batch may wait
	WindowBytes       Size     `toml:"window_bytes"`       // default 16MiB: unacknowledged bytes per connection; at least batch_bytes
	ScanInterval      Duration `toml:"scan_interval"`      // default 1s: how often globs are evaluated again
	PollInterval      Duration `toml:"poll_interval"`      // default 250ms: how often idle files are checked for new data
	PositionsInterval Duration `toml:"positions_interval"` // default 1s: how often acknowledged positions are written
	MetricsListen     string   `toml:"metrics_listen"`     // optional host:port for /metrics
	Inputs            []Input  `toml:"input"`              // at least one [[input]]
}

// Input is one [[input]] table of an agent: files of one topic.
type Input struct {
	Topic   string   `toml:"topic"`    // required; a batch.ValidName
	Paths   []string `toml:"paths"`    // required: absolute filepath.Match globs
	Exclude []string `toml:"exclude"`  // optional globs of files to leave out, like paths
	StartAt string   `toml:"start_at"` // "beginning" (default) or "end": where to start in a file seen for the first time
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
	maxBatchBytes            = 8 * MiB // the agent's own limit (agent.maxBatchBytes); well below the aggregator's default max_frame_bytes
)

// LoadAgent reads the agent config at path, applies defaults to the keys
// it leaves out, and validates it. A file that cannot be read is a plain
// error; every other problem is in an *Errors.
func LoadAgent(path string) (*Agent, error) {
	f, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return load[Agent](f)
}

// SetDefaults sets every zero field of a, and of its inputs, to its
// default. The default ID comes from os.Hostname.
func (a *Agent) SetDefaults() { a.setDefaults(isZero) }

func (a *Agent) setDefaults(u unsetFunc) {
	if u("id", a.ID == "") {
		a.ID = hostID("")
	}
	setDefault(u, "compression", &a.Compression, "zstd")
	setDefault(u, "batch_bytes", &a.BatchBytes, defaultBatchBytes)
	setDefault(u, "batch_wait", &a.BatchWait, defaultBatchWait)
	setDefault(u, "window_bytes", &a.WindowBytes, defaultWindowBytes)
	setDefault(u, "scan_interval", &a.ScanInterval, defaultScanInterval)
	setDefault(u, "poll_interval", &a.PollInterval, defaultPollInterval)
	setDefault(u, "positions_interval", &a.PositionsInterval, defaultPositionsInterval)
	for i := range a.Inputs {
		a.Inputs[i].setDefaults(within(u, indexKey("input", i)))
	}
}

func (in *Input) setDefaults(u unsetFunc) {
	setDefault(u, "start_at", &in.StartAt, "beginning")
}

// Validate reports every problem with a as an *Errors, or returns nil. It
// checks a as it is: call SetDefaults first to fill in unset fields.
func (a *Agent) Validate() error { return validate(a) }

func (a *Agent) check(c *checker) {
	c.name("id", "id", a.ID)
	c.required("state_dir", a.StateDir)
	c.addresses("aggregators", a.Aggregators)
	c.oneOf("compression", a.Compression, "zstd", "s2", "none")
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
	if a.MetricsListen != "" {
		c.address("metrics_listen", a.MetricsListen, false)
	}
	if c.tables("input", len(a.Inputs)) {
		for i := range a.Inputs {
			a.Inputs[i].check(c, indexKey("input", i))
		}
	}
}

func (in *Input) check(c *checker, at string) {
	c.name(at+".topic", "topic", in.Topic)
	if c.nonEmpty(at+".paths", len(in.Paths), "path") {
		c.globs(at+".paths", in.Paths)
	}
	c.globs(at+".exclude", in.Exclude)
	c.oneOf(at+".start_at", in.StartAt, "beginning", "end")
}
