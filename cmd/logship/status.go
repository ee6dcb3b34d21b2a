package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"logship/internal/wire"
)

// statusDoc is `logship status --format json`: the status of every
// aggregator asked, merged. Field names are part of the CLI's contract.
type statusDoc struct {
	Aggregators []statusAggregator     `json:"aggregators"`
	Agents      []statusAgent          `json:"agents"`
	Partitions  []wire.PartitionStatus `json:"partitions"`
	Sinks       []wire.SinkStatus      `json:"sinks"`
}

type statusAggregator struct {
	ID      string    `json:"id"`
	Address string    `json:"address"`
	Time    time.Time `json:"time"`
}

type statusAgent struct {
	Aggregator string `json:"aggregator"`
	wire.AgentStatus
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("status", "--aggregator HOST:PORT [--aggregator ...] [--sink S] [--format table|json]",
		"logship status --aggregator 127.0.0.1:7450 --format json", stderr)
	aggs := aggregatorFlags(fs)
	secFlags := addSecurityFlags(fs)
	sink := fs.String("sink", "", "connect as this sink, so that a token limited to it may ask; only its offsets are shown")
	format := fs.String("format", "table", "table (for people) or json (for scripts)")
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
	d := statusDoc{Aggregators: []statusAggregator{}, Agents: []statusAgent{}, Partitions: []wire.PartitionStatus{}, Sinks: []wire.SinkStatus{}}
	for i, st := range sts {
		d.Aggregators = append(d.Aggregators, statusAggregator{ID: st.Aggregator, Address: (*aggs)[i], Time: st.Time})
		for _, a := range st.Agents {
			d.Agents = append(d.Agents, statusAgent{Aggregator: st.Aggregator, AgentStatus: a})
		}
		d.Partitions = append(d.Partitions, st.Partitions...)
		for _, s := range st.Sinks {
			// An aggregator shows a token limited to the sink that sink's
			// offsets only; show the same whatever the token.
			if *sink == "" || s.Sink == *sink {
				d.Sinks = append(d.Sinks, s)
			}
		}
	}
	if *format == "json" {
		return writeJSON(stdout, d)
	}
	return printStatus(stdout, d)
}

func printStatus(w io.Writer, d statusDoc) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ids := make([]string, len(d.Aggregators))
	for i, a := range d.Aggregators {
		ids[i] = a.ID + " (" + a.Address + ")"
	}
	fmt.Fprintf(tw, "Aggregators: %s\n\n", strings.Join(ids, ", "))

	fmt.Fprintf(tw, "AGENTS (%d connected)\n", len(d.Agents))
	fmt.Fprintln(tw, "AGENT\tADDRESS\tAGGREGATOR\tCONNECTED\tTOPICS\tRAW/S\tRAW TOTAL\tSTORED TOTAL\tOPEN FILES\tFILE LAG")
	for _, a := range d.Agents {
		files, lag := "-", "-" // the agent has not reported yet
		if a.OpenFiles >= 0 {
			files, lag = strconv.Itoa(a.OpenFiles), humanBytes(a.LagBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/s\t%s\t%s\t%s\t%s\n", a.ID, a.Address, a.Aggregator, a.Connected.UTC().Format(time.RFC3339),
			strings.Join(a.Topics, ","), humanBytes(int64(a.BytesPerSec)), humanBytes(a.RawBytes), humanBytes(a.Bytes), files, lag)
	}
	fmt.Fprintln(tw)
	// The files that lag most, as each agent reports them.
	const perAgent = 5
	printed := false
	for _, a := range d.Agents {
		for i, f := range a.Lagging {
			if i == perAgent || f.Size <= f.Acked {
				break
			}
			if !printed {
				fmt.Fprintln(tw, "LAGGING FILES (the most behind, per agent)")
				fmt.Fprintln(tw, "AGENT\tTOPIC\tPATH\tSIZE\tACKED\tLAG")
				printed = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", a.ID, f.Topic, f.Path, f.Size, f.Acked, humanBytes(f.Size-f.Acked))
		}
	}
	if printed {
		fmt.Fprintln(tw)
	}

	fmt.Fprintf(tw, "PARTITIONS (%d)\n", len(d.Partitions))
	fmt.Fprintln(tw, "TOPIC\tAGGREGATOR\tPARTITION\tSTART\tEND\tSIZE\tSEGMENTS\tFIRST APPENDED\tLAST APPENDED")
	for _, p := range d.Partitions {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", p.Topic, p.Aggregator, p.Partition, p.StartOffset, p.EndOffset,
			humanBytes(p.Bytes), p.Segments, fmtTime(p.FirstTime, "-"), fmtTime(p.LastTime, "-"))
	}
	fmt.Fprintln(tw)

	fmt.Fprintf(tw, "SINKS (%d positions)\n", len(d.Sinks))
	fmt.Fprintln(tw, "SINK\tTOPIC\tAGGREGATOR\tPARTITION\tCOMMITTED\tLAG\tLAG BYTES\tCOMMITTED RECORD TIME\tNOTE")
	for _, s := range d.Sinks {
		note := ""
		if s.Behind {
			note = "records lost to retention before this sink read them"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", s.Sink, s.Topic, s.Aggregator, s.Partition, s.Committed,
			s.Lag, humanBytes(s.LagBytes), fmtTime(s.CommittedTime, "(at end)"), note)
	}
	return tw.Flush()
}
