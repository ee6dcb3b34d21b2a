package wire

import (
	"errors"
	"reflect"
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

func FuzzOpsDecoders(f *testing.F) {
	f.Add((&OffsetForTime{Req: 1, Topic: "app", TimeMs: 5}).Encode(nil))
	f.Add((&OffsetTime{Req: 1, Message: "x"}).Encode(nil))
	f.Add((&StatusResult{Req: 1, Status: Status{Version: 1}}).Encode(nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		new(OffsetForTime).Decode(p)
		new(OffsetTime).Decode(p)
		new(StatusRequest).Decode(p)
		new(StatusResult).Decode(p)
	})
}
