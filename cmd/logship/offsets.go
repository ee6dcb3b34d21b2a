package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"logship/internal/wire"
	"logship/logstore/batch"
	"logship/sinks"
)

// runOffsets is `logship offsets list|reset`: see the sinks' positions and
// move them (a replay).
func runOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const help = `Usage: logship offsets list|reset [flags]

  list    every sink's committed offset, lag and the time of its committed record
  reset   move a sink's offsets (a replay); prints the plan, changes nothing without --execute

Examples:
  logship offsets list --aggregator 127.0.0.1:7450
  logship offsets reset --aggregator 127.0.0.1:7450 --sink local --by-duration -2h --execute
`
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return exitError{2}
	}
	switch args[0] {
	case "list":
		return runOffsetsList(ctx, args[1:], stdout, stderr)
	case "reset":
		return runOffsetsReset(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, help)
		return nil
	}
	fmt.Fprintf(stderr, "logship offsets: unknown subcommand %q\n\n%s", args[0], help)
	return exitError{2}
}

// connectAll dials every aggregator as the consumer name ("" for none:
// --sink names one, so that a token limited to that sink works). An
// unreachable aggregator is an error naming it.
func connectAll(ctx context.Context, addrs []string, secFlags *securityFlags, name string) ([]*sinks.Client, func(), error) {
	sec, err := secFlags.security()
	if err != nil {
		return nil, nil, err
	}
	var cs []*sinks.Client
	closeAll := func() {
		for _, c := range cs {
			c.Close()
		}
	}
	for _, a := range addrs {
		c, err := dial(ctx, sec, a, name)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		cs = append(cs, c)
	}
	return cs, closeAll, nil
}

// statusAll asks every aggregator for its status, connected as the
// consumer name ("" for none). Naming a sink lets a token limited to that
// sink ask; the aggregator then reports that sink's offsets only.
func statusAll(ctx context.Context, addrs []string, secFlags *securityFlags, name string) ([]*wire.Status, error) {
	cs, closeAll, err := connectAll(ctx, addrs, secFlags, name)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	var out []*wire.Status
	for i, c := range cs {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, aggError(addrs[i], err)
		}
		out = append(out, st)
	}
	return out, nil
}

func aggregatorFlags(fs *flag.FlagSet) *stringList {
	var l stringList
	fs.Var(&l, "aggregator", "aggregator address host:port (repeat for several; required)")
	return &l
}

func runOffsetsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("offsets list", "--aggregator HOST:PORT [--aggregator ...] [--sink S] [--format table|json]",
		"logship offsets list --aggregator 127.0.0.1:7450 --sink local", stderr)
	aggs := aggregatorFlags(fs)
	secFlags := addSecurityFlags(fs)
	sink := fs.String("sink", "", "only this sink; connect as it, so that a token limited to it may ask")
	format := fs.String("format", "table", "table (for people) or json (one array, for scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkOpsFlags(fs, *aggs, *format); err != nil {
		return err
	}
	if err := checkSinkFlag(*sink); err != nil {
		return err
	}
	sts, err := statusAll(ctx, *aggs, secFlags, *sink)
	if err != nil {
		return err
	}
	var rows []wire.SinkStatus
	ends := map[string]int64{}
	for _, st := range sts {
		for _, p := range st.Partitions {
			ends[partID(p.Aggregator, p.Topic, p.Partition)] = p.EndOffset
		}
		for _, s := range st.Sinks {
			if *sink == "" || s.Sink == *sink {
				rows = append(rows, s)
			}
		}
	}
	if *sink != "" && len(rows) == 0 {
		return unknownSink(*sink, *aggs)
	}
	if *format == "json" {
		if rows == nil {
			rows = []wire.SinkStatus{}
		}
		return writeJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTOPIC\tAGGREGATOR\tPARTITION\tCOMMITTED\tEND\tLAG\tLAG BYTES\tCOMMITTED RECORD TIME\tEPOCH")
	for _, s := range rows {
		end, ok := ends[partID(s.Aggregator, s.Topic, s.Partition)]
		endS := "-"
		if ok {
			endS = strconv.FormatInt(end, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%d\n", s.Sink, s.Topic, s.Aggregator, s.Partition,
			s.Committed, endS, s.Lag, humanBytes(s.LagBytes), fmtTime(s.CommittedTime, "(at end)"), s.Epoch)
	}
	return tw.Flush()
}

func unknownSink(sink string, aggs []string) error {
	return fmt.Errorf("sink %q has no committed offsets on %s: check the name (logship offsets list shows every sink)", sink, strings.Join(aggs, ", "))
}

// checkSinkFlag checks the name given to --sink, when there is one.
func checkSinkFlag(sink string) error {
	if sink == "" {
		return nil
	}
	return batch.CheckName("--sink", sink)
}

func checkOpsFlags(fs *flag.FlagSet, aggs []string, format string) error {
	if err := noArgs(fs); err != nil {
		return err
	}
	if len(aggs) == 0 {
		return errors.New("--aggregator is required")
	}
	if format != "table" && format != "json" {
		return fmt.Errorf("--format %q: want table or json", format)
	}
	return nil
}

func partID(agg, topic string, part int) string { return agg + "/" + topic + "/" + strconv.Itoa(part) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// resetTarget is how --to-* and friends say where to move.
type resetTarget struct {
	kind   string // earliest, latest, offset, time, shift
	offset int64  // for offset and shift
	at     time.Time
	desc   string // the flag as the user gave it, for messages
}

func runOffsetsReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("offsets reset", "--aggregator HOST:PORT [--aggregator ...] --sink S [--topic T] [--partition P]\n       (--to-earliest | --to-latest | --to-offset N | --to-time RFC3339 | --by-duration -2h | --shift-by N) [--execute]",
		"logship offsets reset --aggregator 127.0.0.1:7450 --sink local --to-time 2026-11-22T09:00:00Z --execute", stderr)
	aggs := aggregatorFlags(fs)
	secFlags := addSecurityFlags(fs)
	sink := fs.String("sink", "", "the sink to move (required)")
	topic := fs.String("topic", "", "only this topic (default: every topic the sink has a commit in)")
	partition := fs.Int("partition", -1, "only this partition (needs --topic)")
	toEarliest := fs.Bool("to-earliest", false, "move to the first record still stored")
	toLatest := fs.Bool("to-latest", false, "move to the end: skip everything stored now")
	toOffset := fs.String("to-offset", "", "move to this offset")
	toTime := fs.String("to-time", "", "move to the first record appended at or after this time (RFC 3339, e.g. 2026-11-22T09:00:00Z)")
	byDuration := fs.String("by-duration", "", "like --to-time, relative to now: -2h, -30m, -1d")
	shiftBy := fs.String("shift-by", "", "move by N records from the committed offset: -1000 or 500")
	execute := fs.Bool("execute", false, "apply the plan (without it, only print it)")
	format := fs.String("format", "table", "table (for people) or json (the plan, for scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkOpsFlags(fs, *aggs, *format); err != nil {
		return err
	}
	if *sink == "" {
		return errors.New("--sink is required")
	}
	if err := checkSinkFlag(*sink); err != nil {
		return err
	}
	if *topic != "" {
		if err := batch.CheckName("--topic", *topic); err != nil {
			return err
		}
	}
	if *partition >= 0 && *topic == "" {
		return errors.New("--partition needs --topic")
	}
	var targets []resetTarget
	if *toEarliest {
		targets = append(targets, resetTarget{kind: "earliest", desc: "--to-earliest"})
	}
	if *toLatest {
		targets = append(targets, resetTarget{kind: "latest", desc: "--to-latest"})
	}
	if *toOffset != "" {
		n, err := strconv.ParseInt(*toOffset, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("--to-offset %q: want a non-negative integer", *toOffset)
		}
		targets = append(targets, resetTarget{kind: "offset", offset: n, desc: "--to-offset " + *toOffset})
	}
	if *toTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *toTime)
		if err != nil {
			return fmt.Errorf("--to-time %q: want RFC 3339, like 2026-11-22T09:00:00Z", *toTime)
		}
		targets = append(targets, resetTarget{kind: "time", at: t, desc: "--to-time " + *toTime})
	}
	if *byDuration != "" {
		d, err := parseSignedDuration(*byDuration)
		if err != nil || d > 0 {
			return fmt.Errorf("--by-duration %q: want a negative duration, like -2h, -30m or -1d", *byDuration)
		}
		targets = append(targets, resetTarget{kind: "time", at: time.Now().Add(d), desc: "--by-duration " + *byDuration})
	}
	if *shiftBy != "" {
		n, err := strconv.ParseInt(*shiftBy, 10, 64)
		if err != nil {
			return fmt.Errorf("--shift-by %q: want an integer, like -1000", *shiftBy)
		}
		targets = append(targets, resetTarget{kind: "shift", offset: n, desc: "--shift-by " + *shiftBy})
	}
	if len(targets) != 1 {
		return errors.New("give exactly one of --to-earliest, --to-latest, --to-offset, --to-time, --by-duration, --shift-by")
	}
	cs, closeAll, err := connectAll(ctx, *aggs, secFlags, *sink)
	if err != nil {
		return err
	}
	defer closeAll()
	plan, err := planReset(ctx, cs, *sink, *topic, *partition, targets[0])
	if err != nil {
		return err
	}
	if len(plan) == 0 {
		if *topic != "" {
			return fmt.Errorf("no partition of topic %q on %s", *topic, strings.Join(*aggs, ", "))
		}
		return unknownSink(*sink, *aggs)
	}
	if *execute {
		for i, s := range plan {
			c := cs[s.client]
			if err := c.Reset(ctx, *sink, s.Topic, s.Partition, s.New); err != nil {
				return fmt.Errorf("reset %s/%d on %s: %w%s", s.Topic, s.Partition, s.Aggregator, aggError(c.Addr(), err), appliedNote(i, len(plan)))
			}
			s.Applied = true
		}
	}
	if *format == "json" {
		return writeJSON(stdout, plan)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTOPIC\tAGGREGATOR\tPARTITION\tCURRENT\tNEW\tCHANGE\tNOTE")
	for _, s := range plan {
		cur := "-"
		change := "-"
		if s.Current >= 0 {
			cur = strconv.FormatInt(s.Current, 10)
			change = fmt.Sprintf("%+d", s.New-s.Current)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", *sink, s.Topic, s.Aggregator, s.Partition, cur, s.New, change, s.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if *execute {
		fmt.Fprintf(stdout, "\nApplied. A running sink follows within a few seconds; a stopped one starts there.\n")
	} else {
		fmt.Fprintf(stdout, "\nDry run: nothing changed. Run again with --execute to apply.\n")
	}
	return nil
}

// appliedNote says, after step i of a plan of n steps failed, how many of
// the steps were applied (those before it, in the plan's order): nothing
// when none was.
func appliedNote(i, n int) string {
	switch i {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf(" (1 of the %d steps was applied: the one before this)", n)
	}
	return fmt.Sprintf(" (%d of the %d steps were applied: those before this one)", i, n)
}

// resetStep is one partition of a reset plan.
type resetStep struct {
	client     int
	Aggregator string `json:"aggregator"`
	Topic      string `json:"topic"`
	Partition  int    `json:"partition"`
	Current    int64  `json:"current"` // -1: no commit yet
	New        int64  `json:"new"`
	Note       string `json:"note,omitempty"`
	Applied    bool   `json:"applied"`
}

// planReset works out the new offset of every matching partition. The
// partitions are those the sink has a commit in (any aggregator), or with
// --topic every partition of that topic.
func planReset(ctx context.Context, cs []*sinks.Client, sink, topic string, partition int, t resetTarget) ([]*resetStep, error) {
	var plan []*resetStep
	for i, c := range cs {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, aggError(c.Addr(), err)
		}
		current := map[string]int64{}
		for _, s := range st.Sinks {
			if s.Sink == sink {
				current[partID(s.Aggregator, s.Topic, s.Partition)] = s.Committed
			}
		}
		for _, p := range st.Partitions {
			if (topic != "" && p.Topic != topic) || (partition >= 0 && p.Partition != partition) {
				continue
			}
			cur, has := current[partID(p.Aggregator, p.Topic, p.Partition)]
			if !has && topic == "" {
				continue // not a partition this sink consumes
			}
			if !has {
				cur = -1
			}
			s := &resetStep{client: i, Aggregator: p.Aggregator, Topic: p.Topic, Partition: p.Partition, Current: cur}
			if err := s.resolve(ctx, c, p, t); err != nil {
				return nil, err
			}
			plan = append(plan, s)
		}
	}
	return plan, nil
}

// resolve sets New from the target, within the partition's stored range.
func (s *resetStep) resolve(ctx context.Context, c *sinks.Client, p wire.PartitionStatus, t resetTarget) error {
	where := fmt.Sprintf("%s/%d on %s", p.Topic, p.Partition, p.Aggregator)
	switch t.kind {
	case "earliest":
		s.New = p.StartOffset
	case "latest":
		s.New = p.EndOffset
	case "offset":
		if t.offset < p.StartOffset || t.offset > p.EndOffset {
			return fmt.Errorf("%s: offset %d is outside the stored range [%d, %d]", t.desc, t.offset, p.StartOffset, p.EndOffset)
		}
		s.New = t.offset
	case "shift":
		if s.Current < 0 {
			return fmt.Errorf("%s: %s has no committed offset to shift from", t.desc, where)
		}
		s.New = s.Current + t.offset
		if s.New < p.StartOffset {
			s.New, s.Note = p.StartOffset, "clamped to the first stored record"
		} else if s.New > p.EndOffset {
			s.New, s.Note = p.EndOffset, "clamped to the end"
		}
	case "time":
		if p.FirstTime != nil && t.at.Before(*p.FirstTime) {
			return fmt.Errorf("%s: %s is before the earliest record of %s (appended %s): records from then are not stored. Use --to-earliest to replay everything stored",
				t.desc, t.at.UTC().Format(time.RFC3339), where, p.FirstTime.UTC().Format(time.RFC3339))
		}
		off, err := c.OffsetForTime(ctx, p.Topic, p.Partition, t.at)
		if err != nil {
			return aggError(c.Addr(), err)
		}
		s.New = off
		if off == p.EndOffset {
			s.Note = "nothing appended since then: at the end"
		}
	default:
		panic("BUG: unknown reset target " + t.kind)
	}
	return nil
}

// parseSignedDuration is time.ParseDuration plus whole days ("-1d").
func parseSignedDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
