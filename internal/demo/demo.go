// Package demo runs the whole logship pipeline in one process: an
// aggregator, an agent and a file sink talking over loopback TCP, on sample
// logs written while it runs (with a rename rotation), and checks that
// every line arrived exactly once. It backs `logship demo` and `make demo`.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"logship/agent"
	"logship/aggregator"
	"logship/logstore"
	"logship/logstore/batch"
	"logship/sinks"
	"logship/sinks/file"
)

// Options configures a demo run.
type Options struct {
	Dir          string    // where logs, data and output go; must exist
	LinesPerFile int       // default 100,000
	Out          io.Writer // progress and summary
	Logger       *slog.Logger
}

// Summary is what a run measured.
type Summary struct {
	Lines       int
	RawBytes    int64
	WireBytes   int64
	OutputFiles int
	ShipTime    time.Duration // start until every line is acknowledged by the aggregator
	DeliverTime time.Duration // start until every line is in a published sink file
	Duplicates  int
	Missing     int
	OutOfOrder  int
	OutputDir   string
	DataDir     string
	LogDir      string
	Compression string
	FsyncPolicy string
	Aggregator  string
	Partitions  int
	Topics      []string
	SourceFiles int
	LinesPerSec float64
	RawMBPerSec float64
	Ratio       float64 // raw bytes / wire bytes
}

// stream is one log file the demo writes, possibly across rotations.
type stream struct {
	topic, dir, name string
	format           func(seq int, id string) string
}

var streams = []stream{
	{"nginx-access", "nginx", "access", func(seq int, id string) string {
		return fmt.Sprintf(`10.0.%d.%d - - [%s] "GET /api/items/%d HTTP/1.1" 200 %d "-" "Mozilla/5.0 (X11; Linux x86_64)" %s`,
			seq%7, seq%251, time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"), seq%9973, 200+seq%3000, id)
	}},
	{"app", "app", "api", func(seq int, id string) string {
		return fmt.Sprintf(`%s INFO  [http-%d] request handled path=/v1/orders/%d status=200 duration_ms=%d %s`,
			time.Now().UTC().Format(time.RFC3339Nano), seq%16, seq%5000, seq%97, id)
	}},
	{"app", "app", "worker", func(seq int, id string) string {
		return fmt.Sprintf(`%s WARN  [worker-%d] job retried queue=emails attempt=%d %s`,
			time.Now().UTC().Format(time.RFC3339Nano), seq%4, seq%5, id)
	}},
}

// lineID is the token every demo line ends with: which stream, which
// generation of its file (bumped by each rotation) and the sequence number.
func lineID(name string, gen, seq int) string { return fmt.Sprintf("src=%s.%d seq=%d", name, gen, seq) }

// Run runs the demo. It returns an error unless every line arrived exactly
// once and in order per file.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.LinesPerFile <= 0 {
		o.LinesPerFile = 100_000
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Summary{
		LogDir: filepath.Join(o.Dir, "logs"), DataDir: filepath.Join(o.Dir, "data"),
		OutputDir: filepath.Join(o.Dir, "archive"), Compression: "zstd", FsyncPolicy: "always",
		Partitions: 4, Topics: []string{"app", "nginx-access"}, SourceFiles: len(streams),
	}
	for _, st := range streams {
		if err := os.MkdirAll(filepath.Join(s.LogDir, st.dir), 0o755); err != nil {
			return nil, err
		}
	}
	// Half of every file exists before the agent starts (a backlog), the
	// other half is written while it runs.
	w := newWriter(s.LogDir)
	half := o.LinesPerFile / 2
	for i := range streams {
		if err := w.write(i, half); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Out, "demo: wrote a backlog of %d lines in %d files under %s\n", half*len(streams), len(streams), s.LogDir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	spawn := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	srv, err := aggregator.New(aggregator.Options{
		ID: "agg-1", Listen: "127.0.0.1:0", DataDir: s.DataDir, Partitions: s.Partitions,
		Fsync: logstore.FsyncAlways, Logger: o.Logger.With("role", "aggregator"),
	})
	if err != nil {
		return nil, err
	}
	s.Aggregator = srv.Addr()
	spawn("aggregator", srv.Run)
	fmt.Fprintf(o.Out, "demo: aggregator agg-1 listening on %s, data in %s (fsync=always, %d partitions)\n", s.Aggregator, s.DataDir, s.Partitions)

	fs, err := file.New(file.Options{
		Dir: s.OutputDir, RollSize: 64 << 20, RollInterval: 2 * time.Second, IdleTimeout: 300 * time.Millisecond,
		Logger: o.Logger.With("role", "sink"),
	})
	if err != nil {
		return nil, err
	}
	spawn("sink", func(ctx context.Context) error {
		return sinks.Run(ctx, sinks.Options{
			Name: "archive", Aggregators: []string{s.Aggregator}, Topics: s.Topics,
			MaxWait: 100 * time.Millisecond, MetadataInterval: 200 * time.Millisecond, Logger: o.Logger.With("role", "sink"),
		}, fs)
	})
	fmt.Fprintf(o.Out, "demo: file sink \"archive\" writing to %s\n", s.OutputDir)

	ag, err := agent.New(agent.Options{
		ID: "demo-host", StateDir: filepath.Join(o.Dir, "agent"), Aggregators: []string{s.Aggregator},
		Compression: batch.Zstd, ScanInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		BatchWait: 50 * time.Millisecond, PositionsInterval: 200 * time.Millisecond,
		Inputs: []agent.Input{
			{Topic: "app", Paths: []string{filepath.Join(s.LogDir, "app", "*.log")}},
			{Topic: "nginx-access", Paths: []string{filepath.Join(s.LogDir, "nginx", "*.log")}},
		},
		Logger: o.Logger.With("role", "agent"),
	})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	spawn("agent", ag.Run)
	fmt.Fprintf(o.Out, "demo: agent demo-host shipping app and nginx-access over one connection (zstd)\n")

	// Write the second half while the agent runs; rotate access.log by
	// rename half way through it.
	go func() {
		const chunk = 5000
		rest := o.LinesPerFile - half
		for done := 0; done < rest && ctx.Err() == nil; done += chunk {
			n := min(chunk, rest-done)
			for i := range streams {
				if err := w.write(i, n); err != nil {
					errc <- err
					cancel()
					return
				}
			}
			if done <= rest/2 && rest/2 < done+chunk {
				if err := w.rotate(0); err != nil {
					errc <- err
					cancel()
					return
				}
				fmt.Fprintf(o.Out, "demo: rotated %s (rename + create) while shipping\n", streams[0].name+".log")
			}
		}
		w.finish()
	}()

	total := o.LinesPerFile * len(streams)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-errc:
			cancel()
			wg.Wait()
			return nil, err
		case <-tick.C:
		}
		if s.ShipTime == 0 && w.done() && ag.Idle() && ag.Stats().Lines >= int64(total) {
			s.ShipTime = time.Since(start)
			fmt.Fprintf(o.Out, "demo: every line acknowledged by the aggregator after %s\n", s.ShipTime.Round(time.Millisecond))
		}
		if s.ShipTime == 0 && time.Since(lastReport) < time.Second {
			continue // reading the output is for later: measure the shipping first
		}
		n, err := countPublished(s.OutputDir)
		if err != nil {
			return nil, err
		}
		if time.Since(lastReport) > time.Second {
			st := ag.Stats()
			fmt.Fprintf(o.Out, "demo: %7d lines read, %7d in published files of %d\n", st.Lines, n, total)
			lastReport = time.Now()
		}
		if n >= total && s.ShipTime > 0 {
			s.DeliverTime = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("timed out: %d of %d lines in published files", n, total)
		}
	}
	st := ag.Stats()
	cancel()
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	s.Lines = total
	s.RawBytes = w.rawBytes()
	s.WireBytes = st.WireBytes
	if err := verify(s, w); err != nil {
		return s, err
	}
	s.LinesPerSec = float64(total) / s.ShipTime.Seconds()
	s.RawMBPerSec = float64(s.RawBytes) / 1e6 / s.ShipTime.Seconds()
	if s.WireBytes > 0 {
		s.Ratio = float64(s.RawBytes) / float64(s.WireBytes)
	}
	return s, nil
}

// Print writes the summary for people.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, `
logship demo summary
  lines shipped        %d in %d files (%d topics), one rotation
  raw bytes            %d (%.1f MB)
  bytes on the wire    %d (%.1f MB): compression ratio %.1fx (zstd)
  shipped (acked)      %s: %.0f lines/s, %.1f MB/s raw, fsync=always
  in published files   %s (sink rolls after %s idle)
  output files         %d under %s
  exactly once         %d missing, %d duplicated, %d out of order
`, s.Lines, s.SourceFiles, len(s.Topics), s.RawBytes, float64(s.RawBytes)/1e6,
		s.WireBytes, float64(s.WireBytes)/1e6, s.Ratio,
		s.ShipTime.Round(time.Millisecond), s.LinesPerSec, s.RawMBPerSec,
		s.DeliverTime.Round(time.Millisecond), 300*time.Millisecond,
		s.OutputFiles, s.OutputDir, s.Missing, s.Duplicates, s.OutOfOrder)
}

// writer appends demo lines to the stream files and rotates them.
type writer struct {
	mu    sync.Mutex
	dir   string
	gen   []int
	seq   []int
	raw   int64
	isEnd bool
}

func newWriter(dir string) *writer {
	return &writer{dir: dir, gen: make([]int, len(streams)), seq: make([]int, len(streams))}
}

func (w *writer) path(i int) string {
	return filepath.Join(w.dir, streams[i].dir, streams[i].name+".log")
}

func (w *writer) write(i, n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(w.path(i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	for j := 0; j < n; j++ {
		line := streams[i].format(w.seq[i], lineID(streams[i].name, w.gen[i], w.seq[i]))
		bw.WriteString(line)
		bw.WriteByte('\n')
		w.raw += int64(len(line) + 1)
		w.seq[i]++
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rotate renames stream i's file to NAME.log.1 (which the glob does not
// match) and starts a new generation; the next write creates a new file.
func (w *writer) rotate(i int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.path(i)
	if err := os.Rename(p, p+"."+strconv.Itoa(w.gen[i]+1)); err != nil {
		return err
	}
	w.gen[i]++
	return nil
}

func (w *writer) finish() {
	w.mu.Lock()
	w.isEnd = true
	w.mu.Unlock()
}

func (w *writer) done() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.isEnd
}

func (w *writer) rawBytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.raw
}

// publishedFiles lists the sink's published files, sorted by name: for one
// topic, aggregator and partition that is offset order.
func publishedFiles(out string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && d.Name() == "_tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".log") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func countPublished(out string) (int, error) {
	files, err := publishedFiles(out)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		n += strings.Count(string(b), "\n")
	}
	return n, nil
}

// verify reads every published file and checks that each line written
// arrived exactly once, and in order within each source file.
func verify(s *Summary, w *writer) error {
	files, err := publishedFiles(s.OutputDir)
	if err != nil {
		return err
	}
	s.OutputFiles = len(files)
	seen := map[string]int{}     // src -> count of lines
	lastSeq := map[string]int{}  // src -> last seq seen
	firstSeq := map[string]int{} // src -> first seq seen
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			i := strings.LastIndex(line, " src=")
			if i < 0 {
				fh.Close()
				return fmt.Errorf("%s: line without an id: %q", f, line)
			}
			var src string
			var seq int
			if _, err := fmt.Sscanf(line[i+1:], "src=%s seq=%d", &src, &seq); err != nil {
				fh.Close()
				return fmt.Errorf("%s: bad id in %q: %v", f, line, err)
			}
			if last, ok := lastSeq[src]; ok {
				switch {
				case seq <= last:
					s.Duplicates++
				case seq != last+1:
					s.OutOfOrder++
				}
			} else {
				firstSeq[src] = seq
			}
			lastSeq[src] = seq
			seen[src]++
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	want := 0
	for i := range streams {
		want += w.seq[i]
	}
	got := 0
	for _, n := range seen {
		got += n
	}
	if unique := got - s.Duplicates; unique < want {
		s.Missing = want - unique
	}
	// Every generation of every stream must start at the seq where the
	// previous one stopped: a gap at a rotation is a lost line.
	for i, st := range streams {
		next := 0
		for g := 0; g <= w.gen[i]; g++ {
			src := fmt.Sprintf("%s.%d", st.name, g)
			if _, ok := seen[src]; !ok {
				continue
			}
			if firstSeq[src] != next {
				s.OutOfOrder++
			}
			next = lastSeq[src] + 1
		}
	}
	if s.Missing != 0 || s.Duplicates != 0 || s.OutOfOrder != 0 {
		return fmt.Errorf("not exactly once: %d missing, %d duplicated, %d out of order", s.Missing, s.Duplicates, s.OutOfOrder)
	}
	return nil
}
