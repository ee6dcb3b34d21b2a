package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress draws a one-line progress bar on a terminal, at most every
// redrawEvery. A progress on anything but a terminal draws nothing, so
// that scripts and logs get the output alone. Used by one goroutine.
type progress struct {
	w      io.Writer // nil: draw nothing
	label  string
	total  int64
	start  time.Time
	last   time.Time
	drawn  bool
	width  int
	nowFun func() time.Time
}

const redrawEvery = 100 * time.Millisecond

// newProgress returns a bar for total bytes on w if w is a terminal, and
// one that draws nothing otherwise.
func newProgress(w io.Writer, label string, total int64) *progress {
	p := &progress{label: label, total: total, width: 30, nowFun: time.Now}
	if isTerminal(w) {
		p.w = w
	}
	p.start = p.nowFun()
	return p
}

// set records that done bytes of the total are done.
func (p *progress) set(done int64) {
	if p.w == nil {
		return
	}
	now := p.nowFun()
	if now.Sub(p.last) < redrawEvery {
		return
	}
	p.last = now
	fmt.Fprint(p.w, "\r"+p.line(done, now))
	p.drawn = true
}

// line renders the bar: label [=====>    ]  45%  1.2 GiB / 2.7 GiB  120.0 MiB/s
func (p *progress) line(done int64, now time.Time) string {
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	n := int(frac * float64(p.width))
	bar := strings.Repeat("=", n)
	if n < p.width {
		bar += ">" + strings.Repeat(" ", p.width-n-1)
	}
	rate := ""
	if d := now.Sub(p.start).Seconds(); d > 0 {
		rate = humanBytes(int64(float64(done)/d)) + "/s"
	}
	return fmt.Sprintf("%s [%s] %3.0f%%  %s / %s  %s", p.label, bar, frac*100, humanBytes(done), humanBytes(p.total), rate)
}

// finish erases the bar, so that what follows starts on a clean line.
func (p *progress) finish() {
	if p.w != nil && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// segmentBytes is the size of the segment files under dir: the total of a
// progress bar over a log.
func segmentBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".log") {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
