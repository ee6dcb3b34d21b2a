package config

import (
	"path"
	"strings"
	"time"
)

// HDFSSink holds the keys of a [[sink]] of type "hdfs" (the sinks/hdfs and
// sinks/file packages document the layout and the behaviour). It is
// embedded in Sink: its keys are the [[sink]] table's own. Compression,
// format and path apply to type "file" too (the same engine writes both);
// there path is relative to dir.
type HDFSSink struct {
	Namenodes        []string `toml:"namenodes"`         // type "hdfs", required: host:port of the NameNode, or of both of an HA pair
	User             string   `toml:"user"`              // type "hdfs", required: the HDFS user the sink acts as
	Path             string   `toml:"path"`              // hdfs: required absolute template, e.g. "/logs/{topic}/{yyyy}/{mm}/{dd}/{hh}"; file: default "{topic}", relative to dir
	Compression      string   `toml:"compression"`       // "none" (default), "gzip" or "zstd"
	Format           string   `toml:"format"`            // "lines" (default) or "json" (one object per record, with its metadata)
	BlockSize        Size     `toml:"block_size"`        // type "hdfs": block size of the files; default the cluster's
	BlockReplication int      `toml:"block_replication"` // type "hdfs": replication of the files; default the cluster's
	WriteBuffer      Size     `toml:"write_buffer"`      // write buffer of each open file: default 8MiB for hdfs, 1MiB for file
}

// HDFS sink defaults, and the file sink's where they differ.
const (
	defaultHDFSIdleTimeout   = Duration(5 * time.Minute)
	defaultHDFSWriteBuffer   = 8 * MiB
	hdfsMinBlockSize         = 1 * MiB // dfs.namenode.fs-limits.min-block-size
	hdfsMaxReplication       = 512     // dfs.replication.max
	maxWriteBuffer           = 256 * MiB
	minWriteBuffer           = 4 * KiB
	hdfsChecksumChunk        = 512 // a block size is a multiple of it
	defaultCompression       = "none"
	defaultFormat            = "lines"
	pathFieldsForHelpMessage = "{topic}, {aggregator}, {partition}, {yyyy}, {mm}, {dd}, {hh}"
)

// defaultIdleTimeout is the idle_timeout default of the sink's type: an
// HDFS file is worth keeping open longer (few large files).
func (s *Sink) defaultIdleTimeout() Duration {
	if s.Type == "hdfs" {
		return defaultHDFSIdleTimeout
	}
	return defaultIdleTimeout
}

// setHDFSDefaults fills in the defaults of a sink of type "hdfs" (other
// types keep these keys zero).
func (s *Sink) setHDFSDefaults(u unsetFunc) {
	if s.Type != "hdfs" {
		// Type "file" leaves them zero: the engine's own defaults
		// (path "{topic}", 1MiB buffer, none, lines) apply.
		return
	}
	k := &s.HDFSSink // explicit: other types' embedded structs may share field names
	setDefault(u, "write_buffer", &k.WriteBuffer, defaultHDFSWriteBuffer)
	setDefault(u, "compression", &k.Compression, defaultCompression)
	setDefault(u, "format", &k.Format, defaultFormat)
}

// checkHDFS checks the keys of a sink of type "hdfs".
func (s *Sink) checkHDFS(c *checker, at string) {
	k := &s.HDFSSink
	key := func(name string) string { return at + "." + name }
	if c.nonEmpty(key("namenodes"), len(k.Namenodes), "host:port") {
		c.addresses(key("namenodes"), k.Namenodes)
		if len(k.Namenodes) > 2 {
			c.errorf(key("namenodes"), "%d namenodes: want one, or the two of an HA pair", len(k.Namenodes))
		}
	}
	c.required(key("user"), k.User)
	if c.required(key("path"), k.Path) {
		if msg := checkHDFSPath(k.Path); msg != "" {
			c.errorf(key("path"), "%q: %s", k.Path, msg)
		}
	}
	if s.Dir != "" {
		c.errorf(key("dir"), `only for type "file": an hdfs sink writes under path`)
	}
	if k.BlockSize != 0 && (k.BlockSize < hdfsMinBlockSize || k.BlockSize%hdfsChecksumChunk != 0) {
		c.errorf(key("block_size"), "%v: want at least %v, a multiple of %d bytes (or leave it out for the cluster's)", k.BlockSize, hdfsMinBlockSize, hdfsChecksumChunk)
	}
	if k.BlockReplication < 0 || k.BlockReplication > hdfsMaxReplication {
		c.errorf(key("block_replication"), "%d: want 1 to %d (or leave it out for the cluster's)", k.BlockReplication, hdfsMaxReplication)
	}
	s.checkEngine(c, at)
}

// checkFileEngine checks the engine keys of a sink of type "file", and
// that it sets no HDFS-only key.
func (s *Sink) checkFileEngine(c *checker, at string) {
	k := &s.HDFSSink
	key := func(name string) string { return at + "." + name }
	for name, set := range map[string]bool{
		"namenodes": len(k.Namenodes) > 0, "user": k.User != "", "block_size": k.BlockSize != 0, "block_replication": k.BlockReplication != 0,
	} {
		if set {
			c.errorf(key(name), `only for type "hdfs"`)
		}
	}
	if msg := checkTemplate(k.Path); msg != "" {
		c.errorf(key("path"), "%q: %s", k.Path, msg)
	}
	// Unset (zero) means the engine's default.
	if k.Compression != "" {
		c.oneOf(key("compression"), k.Compression, "none", "gzip", "zstd")
	}
	if k.Format != "" {
		c.oneOf(key("format"), k.Format, "lines", "json")
	}
	if k.WriteBuffer != 0 {
		c.sizeRange(key("write_buffer"), k.WriteBuffer, minWriteBuffer, maxWriteBuffer)
	}
}

// checkEngine checks the keys the file engine shares between types.
func (s *Sink) checkEngine(c *checker, at string) {
	k := &s.HDFSSink
	c.oneOf(at+".compression", k.Compression, "none", "gzip", "zstd")
	c.oneOf(at+".format", k.Format, "lines", "json")
	c.sizeRange(at+".write_buffer", k.WriteBuffer, minWriteBuffer, maxWriteBuffer)
}

// checkHDFSPath checks an hdfs path template as the sink splits it when
// it starts (hdfs.SplitPath): absolute, clean, its fixed leading
// directories (no '{' or '}': the sink's own, holding _tmp and _state),
// then a relative template from the first element with a '{' or a '}' on,
// every element of which is checked. No element may hold a ':', which the
// NameNode refuses in a path (DFSUtil.isValidName): every mkdir would fail
// and every file be written again forever. It returns what is wrong, or "".
func checkHDFSPath(p string) string {
	if !strings.HasPrefix(p, "/") || p == "/" {
		return "want an absolute path below /, e.g. /logs/{topic}/{yyyy}/{mm}/{dd}/{hh}"
	}
	if path.Clean(p) != p {
		return "want a clean path: no trailing '/', '//', '.' or '..'"
	}
	if strings.Contains(p, ":") {
		return "HDFS refuses ':' in a path element"
	}
	segs := strings.Split(p[1:], "/")
	i := 0
	for i < len(segs) && !strings.ContainsAny(segs[i], "{}") {
		i++
	}
	if i == 0 {
		return "want a fixed directory first, e.g. /logs/{topic}: it holds the sink's _tmp and _state"
	}
	return checkTemplate(strings.Join(segs[i:], "/"))
}

// checkTemplate checks a relative path template (sinks/file's syntax): it
// returns what is wrong, or "".
func checkTemplate(t string) string {
	if t == "" {
		return ""
	}
	if strings.HasPrefix(t, "/") {
		return "want a path relative to dir"
	}
	for i, seg := range strings.Split(t, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return `empty, "." or ".." path element`
		}
		if i == 0 && (seg == "_tmp" || seg == "_state") {
			return seg + " is the sink's own directory"
		}
		for rest := seg; rest != ""; {
			i := strings.IndexAny(rest, "{}")
			if i < 0 {
				break
			}
			if rest[i] == '}' {
				return "unmatched '}'"
			}
			j := strings.IndexByte(rest[i:], '}')
			if j < 0 {
				return "unmatched '{'"
			}
			switch name := rest[i+1 : i+j]; name {
			case "topic", "aggregator", "partition", "yyyy", "mm", "dd", "hh":
			default:
				return "unknown field {" + name + "}: want " + pathFieldsForHelpMessage
			}
			rest = rest[i+j+1:]
		}
	}
	return ""
}

// refuseFileEngineKeys reports every key of HDFSSink set on a sink whose
// type uses none of them (a type other than "file" and "hdfs" calls it
// from its case in checkType).
func (s *Sink) refuseFileEngineKeys(c *checker, at string) {
	k := &s.HDFSSink
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"namenodes", len(k.Namenodes) > 0}, {"user", k.User != ""}, {"path", k.Path != ""},
		{"compression", k.Compression != ""}, {"format", k.Format != ""}, {"block_size", k.BlockSize != 0},
		{"block_replication", k.BlockReplication != 0}, {"write_buffer", k.WriteBuffer != 0},
	} {
		if f.set {
			c.errorf(at+"."+f.name, `only for type "hdfs" (or "file")`)
		}
	}
}
