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
		name                string
		c                   cutter
		data                string
		want                []string
		wantLeft, wantSplit int
	}{
		{"lines", cutter{lineMax: 10}, "a\nbb\nccc", []string{"a", "bb"}, 3, 0},
		{"partial at eof", cutter{lineMax: 10, eof: true, partial: true}, "a\nccc", []string{"a", "ccc"}, 0, 0},
		{"partial not at eof", cutter{lineMax: 10, partial: true}, "a\nccc", []string{"a"}, 3, 0},
		{"long line cut", cutter{lineMax: 4}, "abcdefghij\nx\n", []string{"abcd", "efgh", "ij", "x"}, 0, 2},
		{"exactly lineMax", cutter{lineMax: 4}, "abcd\nx\n", []string{"abcd", "x"}, 0, 0},
		{"multiline waits for the next line", cutter{ml: start, lineMax: 10, recMax: 20}, "S1\nc\nS2\nc", []string{"S1\nc"}, 4, 0},
		{"multiline forced", cutter{ml: start, lineMax: 10, recMax: 20, eof: true, force: true}, "S1\nc\nS2\nc\n", []string{"S1\nc", "S2\nc"}, 0, 0},
		{"multiline max lines", cutter{ml: start, lineMax: 10, recMax: 20, force: true}, "S\na\nb\nc\nd\n", []string{"S\na\nb", "c\nd"}, 0, 1},
		{"multiline max bytes", cutter{ml: start, lineMax: 10, recMax: 8, force: true}, "S\naaa\nbbb\n", []string{"S\naaa", "bbb"}, 0, 1},
		// A line longer than lineMax is never joined, its last piece
		// included.
		{"multiline long first line", cutter{ml: start, lineMax: 4, recMax: 20, force: true}, "Sabcdef\nc\nS2\n", []string{"Sabc", "def", "c", "S2"}, 0, 1},
		{"multiline read from inside a long line", cutter{ml: start, lineMax: 10, recMax: 20, force: true, midLine: true}, "ef\nc\nS\n", []string{"ef", "c", "S"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			var got []string
			split := 0
			for len(data) > 0 {
				rec, adv, sp := tc.c.next(data)
				if adv == 0 {
					break
				}
				if sp {
					split++
				}
				got = append(got, string(rec))
				data = data[adv:]
			}
			if !slices.Equal(got, tc.want) || len(data) != tc.wantLeft || split != tc.wantSplit {
				t.Errorf("got %q, %d bytes left, %d split; want %q, %d, %d", got, len(data), split, tc.want, tc.wantLeft, tc.wantSplit)
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
