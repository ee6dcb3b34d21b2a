package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"logship/logstore"
	"logship/logstore/batch"
)

const logUsage = `Usage: logship log COMMAND [flags]

Offline tools for an aggregator's data directory. They take no lock and
write nothing, so they can run beside a live aggregator.

Commands:
  dump    print the batches and records of a topic
  verify  check every CRC, every index entry, the checkpoint and the source
          snapshots; exit 1 naming file and byte on any problem

Examples:
  logship log dump --data-dir /var/lib/logship/data --topic app --partition 0 --from 1000
  logship log verify --data-dir /var/lib/logship/data
`

func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, logUsage)
		return exitError{2}
	}
	switch args[0] {
	case "dump":
		return runLogDump(ctx, args[1:], stdout, stderr)
	case "verify":
		return runLogVerify(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stderr, logUsage)
		return nil
	}
	fmt.Fprintf(stderr, "logship log: unknown command %q\n\n%s", args[0], logUsage)
	return exitError{2}
}

// logDataDir is the data directory of an aggregator: its log lives in
// DIR/log (see package aggregator). A directory that is itself a log
// (holds partition directories) is accepted too.
func logDataDir(dir string) string {
	if st, err := os.Stat(dir + "/log"); err == nil && st.IsDir() {
		return dir + "/log"
	}
	return dir
}

func runLogDump(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("log dump", "--data-dir DIR --topic T [--partition P] [--from OFFSET] [--records=false]",
		"logship log dump --data-dir /var/lib/logship/data --topic app --partition 0 --from 1000", stderr)
	dir := fs.String("data-dir", "", "the aggregator's data_dir (required)")
	topic := fs.String("topic", "", "topic (required)")
	part := fs.Int("partition", -1, "partition (default: every partition of the topic)")
	from := fs.Int64("from", 0, "first offset to print")
	records := fs.Bool("records", true, "print each record under its batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *dir == "" || *topic == "" {
		fs.Usage()
		return errors.New("--data-dir and --topic are required")
	}
	root := logDataDir(*dir)
	parts, err := logstore.ListPartitions(root)
	if err != nil {
		return err
	}
	dec, err := batch.NewDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	w := bufio.NewWriterSize(stdout, 256<<10)
	defer w.Flush()
	// A bar only when the records go elsewhere than the terminal.
	var bar *progress
	if isTerminal(stdout) {
		bar = newProgress(io.Discard, "", 0)
	} else {
		var total int64
		for _, pd := range parts {
			if pd.Topic == *topic && (*part < 0 || pd.ID == *part) {
				total += segmentBytes(pd.Path)
			}
		}
		bar = newProgress(stderr, "dump", total)
	}
	defer bar.finish()
	var done int64
	found := false
	for _, pd := range parts {
		if pd.Topic != *topic || (*part >= 0 && pd.ID != *part) {
			continue
		}
		found = true
		err := logstore.Dump(root, pd.Topic, pd.ID, *from, func(b *logstore.DumpBatch) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			h := &b.Header
			done += int64(h.Size)
			bar.set(done)
			fmt.Fprintf(w, "batch topic=%s partition=%d offsets=%d-%d records=%d file=%s pos=%d size=%d compression=%s raw=%d append_time=%s agent=%s source=%016x path=%s range=%d-%d\n",
				b.Topic, b.Partition, h.BaseOffset, h.NextOffset()-1, h.Count, b.Path, b.Pos, h.Size, h.Compression, h.RawLen,
				time.UnixMilli(h.AppendTime).UTC().Format(time.RFC3339Nano), h.Agent, h.SourceID, strconv.Quote(h.Path), h.RangeStart, h.RangeEnd)
			if !*records {
				return nil
			}
			return dec.Decode(b.Bytes, h, func(r batch.Record) error {
				if r.Offset < *from {
					return nil
				}
				fmt.Fprintf(w, "  %d %s %s\n", r.Offset, time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano), r.Data)
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("%s partition %d: %w", pd.Topic, pd.ID, err)
		}
	}
	if !found {
		return fmt.Errorf("no partition of topic %q in %s", *topic, root)
	}
	return nil
}

func runLogVerify(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("log verify", "--data-dir DIR", "logship log verify --data-dir /var/lib/logship/data", stderr)
	dir := fs.String("data-dir", "", "the aggregator's data_dir (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return errors.New("--data-dir is required")
	}
	root := logDataDir(*dir)
	n := 0
	bar := newProgress(stderr, "verify", segmentBytes(root))
	sum, err := logstore.VerifyWatched(root, func(p logstore.Problem) {
		n++
		bar.finish()
		fmt.Fprintln(stdout, p)
	}, bar.set)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checked %d partitions, %d segments, %d indexes, %d state files, %d batches, %d records, %d bytes: %d problems\n",
		sum.Partitions, sum.Segments, sum.Indexes, sum.StateFiles, sum.Batches, sum.Records, sum.Bytes, n)
	if n > 0 {
		return exitError{1}
	}
	return nil
}
