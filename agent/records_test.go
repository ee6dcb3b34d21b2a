package agent

import (
	"path/filepath"
	"slices"
	"testing"
)

// The cutter on its own: which records a read yields, and where it stops
// for more.
func TestCutter(t *testing.T) {
	start, err := compileMultiline(&Multiline{Pattern: `^S`, MaxLines: 3, MaxBytes: 20}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		c        cutter
		data     string
		want     []string
		wantLeft int
		wantCuts []cutBy // the limit that cut each record cut, in order
	}{
		{"lines", cutter{lineMax: 10}, "a\nbb\nccc", []string{"a", "bb"}, 3, nil},
		{"partial at eof", cutter{lineMax: 10, eof: true, partial: true}, "a\nccc", []string{"a", "ccc"}, 0, nil},
		{"partial not at eof", cutter{lineMax: 10, partial: true}, "a\nccc", []string{"a"}, 3, nil},
		{"long line cut", cutter{lineMax: 4}, "abcdefghij\nx\n", []string{"abcd", "efgh", "ij", "x"}, 0, []cutBy{cutLineMax, cutLineMax}},
		{"exactly lineMax", cutter{lineMax: 4}, "abcd\nx\n", []string{"abcd", "x"}, 0, nil},
		{"multiline waits for the next line", cutter{ml: start, lineMax: 10, recMax: 20}, "S1\nc\nS2\nc", []string{"S1\nc"}, 4, nil},
		{"multiline forced", cutter{ml: start, lineMax: 10, recMax: 20, eof: true, force: true}, "S1\nc\nS2\nc\n", []string{"S1\nc", "S2\nc"}, 0, nil},
		{"multiline max lines", cutter{ml: start, lineMax: 10, recMax: 20, force: true}, "S\na\nb\nc\nd\n", []string{"S\na\nb", "c\nd"}, 0, []cutBy{cutMaxLines}},
		{"multiline max bytes", cutter{ml: start, lineMax: 10, recMax: 8, force: true}, "S\naaa\nbbb\n", []string{"S\naaa", "bbb"}, 0, []cutBy{cutRecMax}},
		// A line longer than lineMax is never joined, its last piece
		// included.
		{"multiline long first line", cutter{ml: start, lineMax: 4, recMax: 20, force: true}, "Sabcdef\nc\nS2\n", []string{"Sabc", "def", "c", "S2"}, 0, []cutBy{cutLineMax}},
		{"multiline read from inside a long line", cutter{ml: start, lineMax: 10, recMax: 20, force: true, midLine: true}, "ef\nc\nS\n", []string{"ef", "c", "S"}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			var got []string
			var cuts []cutBy
			for len(data) > 0 {
				rec, adv, cut := tc.c.next(data)
				if adv == 0 {
					break
				}
				if cut != notCut {
					cuts = append(cuts, cut)
				}
				got = append(got, string(rec))
				data = data[adv:]
			}
			if !slices.Equal(got, tc.want) || len(data) != tc.wantLeft || !slices.Equal(cuts, tc.wantCuts) {
				t.Errorf("got %q, %d bytes left, cut by %v; want %q, %d, %v", got, len(data), cuts, tc.want, tc.wantLeft, tc.wantCuts)
			}
		})
	}
}

// cutLimit names the limit that cut a record as the config names it, with
// its value, not the record's length (found in review: a record cut at
// max_lines was logged as "longer than the maximum" with max=7391, its
// length). A byte limit lowered by the aggregator's max frame is named as
// such.
func TestCutLimit(t *testing.T) {
	ml, err := compileMultiline(&Multiline{Pattern: `^S`, MaxLines: 3, MaxBytes: 2000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	const maxLine = 1000 // the agent's MaxLineBytes
	for _, tc := range []struct {
		name     string
		c        cutter
		by       cutBy
		wantName string
		wantMax  int
	}{
		{"line", cutter{lineMax: maxLine}, cutLineMax, "max_line_bytes", maxLine},
		{"line under the frame cap", cutter{lineMax: 500}, cutLineMax, "aggregator max_frame_bytes", 500},
		{"max lines", cutter{ml: ml, lineMax: maxLine, recMax: 2000}, cutMaxLines, "multiline.max_lines", 3},
		{"max bytes", cutter{ml: ml, lineMax: maxLine, recMax: 2000}, cutRecMax, "multiline.max_bytes", 2000},
		{"max bytes under the frame cap", cutter{ml: ml, lineMax: maxLine, recMax: 1500}, cutRecMax, "aggregator max_frame_bytes", 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if name, max := tc.c.cutLimit(tc.by, maxLine); name != tc.wantName || max != tc.wantMax {
				t.Errorf("cutLimit = %q, %d; want %q, %d", name, max, tc.wantName, tc.wantMax)
			}
		})
	}
}

// Without file events the agent still finds and reads files, by polling
// and scanning.
func TestPollingWithoutFileEvents(t *testing.T) {
	dir := t.TempDir()
	fa := newFakeAgg(t)
	opts := testOpts(t, dir, fa.addr())
	opts.NoWatch = true
	opts.Inputs = []Input{{Topic: "app", Paths: []string{filepath.Join(dir, "*.log")}}}
	ag := startAgent(t, opts)
	w := newLogWriter(t, filepath.Join(dir, "a.log"), "a")
	w.write(10)
	waitFor(t, "lines", func() bool { return fa.records() == 10 })
	w.rotate(filepath.Join(dir, "a.log.1"), 5)
	w.write(10)
	waitFor(t, "all lines", func() bool { return fa.records() == 25 && ag.Idle() })
	checkStreams(t, fa.snapshot(), map[string]int{"a": 25}, nil)
	if ag.watch != nil {
		t.Error("watcher running with NoWatch")
	}
}
