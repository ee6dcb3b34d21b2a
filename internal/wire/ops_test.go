package wire

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestOpsRoundTrip(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123).UTC()
	tests := []struct {
		name    string
		in, out interface {
			Encode([]byte) []byte
			Decode([]byte) error
		}
	}{
		{"offset for time", &OffsetForTime{Req: 1, Topic: "app", Partition: 3, TimeMs: now.UnixMilli()}, &OffsetForTime{}},
		{"offset time", &OffsetTime{Req: 2, Status: TimeFailed, Offset: 9, Message: "disk"}, &OffsetTime{}},
		{"status request", &StatusRequest{Req: 3}, &StatusRequest{}},
		{"agent report", &AgentReport{Files: 3, LagBytes: 900, Lagging: []FileLag{{"app", "/var/log/a.log", 1000, 400}, {"web", "/w", 5, 5}}}, &AgentReport{}},
		{"status", &StatusResult{Req: 4, Status: Status{
			Version: StatusVersion, Aggregator: "agg-1", Time: now,
			Agents:     []AgentStatus{{ID: "web-1", Address: "10.0.0.1:5000", Connected: now, Topics: []string{"app"}, Batches: 2, Bytes: 100, RawBytes: 900, BytesPerSec: 1.5}},
			Partitions: []PartitionStatus{{Topic: "app", Aggregator: "agg-1", Partition: 0, StartOffset: 1, EndOffset: 9, Bytes: 100, Segments: 1, FirstTime: &now, LastTime: &now}},
			Sinks:      []SinkStatus{{Sink: "hdfs", Topic: "app", Aggregator: "agg-1", Partition: 0, Committed: 5, Epoch: 1, Lag: 4, LagBytes: 50, CommittedTime: &now}},
		}}, &StatusResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.out.Decode(tt.in.Encode(nil)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tt.in, tt.out) {
				t.Fatalf("got %+v, want %+v", tt.out, tt.in)
			}
		})
	}
}

func TestStatusDecodeRefuses(t *testing.T) {
	for name, p := range map[string][]byte{
		"short":   {0, 0, 0},
		"no json": append(make([]byte, 8), "nope"...),
		"version": append(make([]byte, 8), `{"version":2}`...),
	} {
		t.Run(name, func(t *testing.T) {
			var m StatusResult
			if err := m.Decode(p); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestAgentReportBounded: however many files lag, the report stays within
// MaxAgentReport and lists the first ones, in order.
func TestAgentReportBounded(t *testing.T) {
	r := AgentReport{Files: 5000, LagBytes: 1 << 40}
	for i := range 5000 {
		r.Lagging = append(r.Lagging, FileLag{Topic: "app", Path: fmt.Sprintf("/var/log/app/%04d-%s.log", i, strings.Repeat("x", 40)), Size: int64(i), Acked: 1})
	}
	b := r.Encode(nil)
	if len(b) > MaxAgentReport {
		t.Fatalf("%d bytes, limit %d", len(b), MaxAgentReport)
	}
	var got AgentReport
	if err := got.Decode(b); err != nil {
		t.Fatal(err)
	}
	if got.Files != 5000 || len(got.Lagging) < 500 || got.Lagging[0] != r.Lagging[0] || got.Lagging[len(got.Lagging)-1] != r.Lagging[len(got.Lagging)-1] {
		t.Fatalf("listed %d files: first %+v", len(got.Lagging), got.Lagging[0])
	}
}

func FuzzOpsDecoders(f *testing.F) {
	f.Add((&OffsetForTime{Req: 1, Topic: "app", TimeMs: 5}).Encode(nil))
	f.Add((&OffsetTime{Req: 1, Message: "x"}).Encode(nil))
	f.Add((&StatusResult{Req: 1, Status: Status{Version: 1}}).Encode(nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		new(OffsetForTime).Decode(p)
		new(OffsetTime).Decode(p)
		new(StatusRequest).Decode(p)
		new(StatusResult).Decode(p)
		new(AgentReport).Decode(p)
	})
}
