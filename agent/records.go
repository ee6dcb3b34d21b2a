package agent

import (
	"bytes"
	"fmt"
	"regexp"
	"time"
)

// Cutting records out of the bytes of a file: a line, a piece of a line
// longer than the maximum, an incomplete last line held past
// PartialTimeout, or several lines joined by a multiline rule (doc.go,
// "Records"). A record is always a contiguous range of the file: the
// newlines inside a multiline record are the file's own, and only the
// newline that ends a record is left out of it, so a batch's range is its
// records' bytes plus one newline per record that had one.

// input is an Input as the loop uses it: its multiline rule compiled.
// Sources point to theirs; a reload swaps them.
type input struct {
	Input
	ml *multiline // nil: one line is one record
}

// multiline is a compiled Multiline.
type multiline struct {
	re       *regexp.Regexp
	cont     bool // Match is "continuation"
	negate   bool
	maxLines int
	maxBytes int
	timeout  time.Duration
}

// compileMultiline checks and compiles m; maxLine is the agent's
// MaxLineBytes (0: the default), the default and the bound of MaxBytes.
func compileMultiline(m *Multiline, maxLine int) (*multiline, error) {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	if m.Pattern == "" {
		return nil, fmt.Errorf("multiline: pattern is required")
	}
	re, err := regexp.Compile(m.Pattern)
	if err != nil {
		return nil, fmt.Errorf("multiline: pattern: %w", err)
	}
	ml := &multiline{re: re, negate: m.Negate, maxLines: m.MaxLines, maxBytes: m.MaxBytes, timeout: m.Timeout}
	switch m.Match {
	case "", "start":
	case "continuation":
		ml.cont = true
	default:
		return nil, fmt.Errorf("multiline: match %q: want start or continuation", m.Match)
	}
	if ml.maxLines == 0 {
		ml.maxLines = DefaultMultilineLines
	}
	if ml.maxBytes == 0 {
		ml.maxBytes = maxLine
	}
	if ml.timeout == 0 {
		ml.timeout = DefaultMultilineTimeout
	}
	if ml.maxLines < 1 || ml.maxBytes < 1 || ml.maxBytes > maxLineBytes || ml.timeout < 0 {
		return nil, fmt.Errorf("multiline: max lines %d, max bytes %d (at most %d), timeout %v: out of range",
			ml.maxLines, ml.maxBytes, maxLineBytes, ml.timeout)
	}
	return ml, nil
}

// compileInputs compiles the multiline rules of validated inputs.
func compileInputs(ins []Input, maxLine int) []*input {
	out := make([]*input, len(ins))
	for i, in := range ins {
		out[i] = &input{Input: in}
		if in.Multiline != nil {
			ml, err := compileMultiline(in.Multiline, maxLine)
			if err != nil {
				panic("BUG: agent: multiline rule not validated: " + err.Error())
			}
			out[i].ml = ml
		}
	}
	return out
}

// continues reports whether line continues the record before it.
func (m *multiline) continues(line []byte) bool {
	hit := m.re.Match(line) != m.negate
	return hit == m.cont
}

// cutter cuts the records of one read. Its fields are the limits and
// decisions of that read.
type cutter struct {
	ml      *multiline
	lineMax int // a line longer than this is cut
	recMax  int // a multiline record longer than this is cut
	// eof: data ends where the file ends (not where the buffer does).
	eof bool
	// force: a multiline record whose next line is not in data is
	// complete (its timeout passed, or the buffer cannot grow).
	force bool
	// partial: an incomplete line at eof is a record (PartialTimeout).
	partial bool
	// midLine: data starts inside a line that was cut (longer than
	// lineMax): its last piece is a record of its own, never the start
	// of a multiline record.
	midLine bool
}

// cutBy is the limit that cut a record, if any.
type cutBy uint8

const (
	notCut      cutBy = iota
	cutLineMax        // a line longer than lineMax
	cutMaxLines       // a multiline record at its rule's max lines
	cutRecMax         // a multiline record at recMax bytes
)

// next finds the record at the start of data. adv is how many bytes of
// the file it stands for (0: none can be decided yet from data); cut
// says which limit cut it, if one did.
func (c *cutter) next(data []byte) (rec []byte, adv int, cut cutBy) {
	nl := bytes.IndexByte(data[:min(len(data), c.lineMax+1)], '\n')
	switch {
	case nl < 0 && len(data) > c.lineMax:
		c.midLine = true
		return data[:c.lineMax], c.lineMax, cutLineMax
	case nl < 0 && c.eof && c.partial && len(data) > 0:
		return data, len(data), notCut
	case nl < 0:
		return nil, 0, notCut
	}
	if c.ml == nil || c.midLine {
		c.midLine = false
		return data[:nl], nl + 1, notCut
	}
	end, lines := nl, 1 // the record is data[:end]
	for {
		rest := data[end+1:]
		nl2 := bytes.IndexByte(rest[:min(len(rest), c.lineMax+1)], '\n')
		var line []byte
		switch {
		case nl2 >= 0:
			line = rest[:nl2]
		case len(rest) > c.lineMax:
			// The next line is too long to be joined: it starts its
			// own record (and is cut).
			return data[:end], end + 1, notCut
		case c.force:
			return data[:end], end + 1, notCut
		default:
			return nil, 0, notCut // the next line decides
		}
		if !c.ml.continues(line) {
			return data[:end], end + 1, notCut
		}
		if lines+1 > c.ml.maxLines {
			return data[:end], end + 1, cutMaxLines
		}
		if end+1+len(line) > c.recMax {
			return data[:end], end + 1, cutRecMax
		}
		end += 1 + len(line)
		lines++
	}
}

// cutLimit names the limit that cut a record, as the agent's config names
// it, and gives its value, for the log. The byte limits are the settings,
// or less under the session's frame cap (see frameLimits): the
// aggregator's max_frame_bytes is named then, with the limit it makes.
func (c *cutter) cutLimit(by cutBy, maxLine int) (name string, max int) {
	const frame = "aggregator max_frame_bytes"
	switch by {
	case cutMaxLines:
		return "multiline.max_lines", c.ml.maxLines
	case cutRecMax:
		if c.recMax < c.ml.maxBytes {
			return frame, c.recMax
		}
		return "multiline.max_bytes", c.recMax
	}
	if c.lineMax < maxLine {
		return frame, c.lineMax
	}
	return "max_line_bytes", c.lineMax
}
