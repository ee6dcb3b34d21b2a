package wire

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz tests of every frame decoder. Each checks that a decoder never
// panics, never reads past its payload, and that what it accepts encodes
// back to the same bytes (so no field is silently dropped or misread).
// Seeds live in testdata/fuzz/<FuzzName>/ (go test runs them every time);
// go test -run TestFuzzCorpus -update-corpus rewrites them from fuzzSeeds.

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz seeds from fuzzSeeds")

// codec is a decoded message that encodes itself back.
type codec interface {
	Encode([]byte) []byte
	Decode([]byte) error
}

// fuzzSeeds are the seed payloads of each fuzz target.
func fuzzSeeds() map[string][][]byte {
	now := time.UnixMilli(1_700_000_000_000).UTC()
	enc := func(m codec) []byte { return m.Encode(nil) }
	return map[string][][]byte{
		"FuzzHello":           {enc(&Hello{Version: 2, Role: RoleAgent, ID: "web-01", Token: "s3cret"}), enc(&Hello{Role: RoleConsumer}), {1, 1, 0xff, 0xff}},
		"FuzzWelcome":         {enc(&Welcome{Version: 2, Aggregator: "agg-1", MaxFrame: 16 << 20})},
		"FuzzProduce":         {append(EncodeProduceHeader(nil, 7), "batch bytes"...), {1, 2, 3}},
		"FuzzProduceAck":      {enc(&ProduceAck{Seq: 1, Status: AckResync, StoredEnd: 99, Partition: 2, BaseOffset: -1, Message: "m"})},
		"FuzzFetch":           {enc(&Fetch{Req: 1, Topic: "app", Partition: 3, Offset: 10, MaxBytes: 1 << 20, MaxWaitMs: 500}), enc(&Fetch{Topic: "../../etc"})},
		"FuzzFetchResult":     {append((&FetchResult{Req: 2, Status: FetchOK, Start: 1, End: 9}).EncodeHeader(nil), "xyz"...)},
		"FuzzMetadata":        {enc(&Metadata{Req: 3, Topics: []string{"app", "web"}}), {0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff}},
		"FuzzMetadataResult":  {enc(&MetadataResult{Req: 4, Aggregator: "a", Partitions: []PartitionInfo{{"app", 1, 2, 3}}})},
		"FuzzOffsetCommit":    {enc(&OffsetCommit{Req: 5, Sink: "s", Topic: "t", Partition: 1, Offset: 9, Epoch: 1})},
		"FuzzOffsetCommitted": {enc(&OffsetCommitted{Req: 6, Status: CommitReset, Message: "reset"})},
		"FuzzOffsetFetch":     {enc(&OffsetFetch{Req: 7, Sink: "s", Topic: "t"})},
		"FuzzOffsets":         {enc(&Offsets{Req: 8, Offsets: []PartitionOffset{{0, 5, 0}, {3, 9, 2}}}), {0, 0, 0, 0, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff}},
		"FuzzOffsetReset":     {enc(&OffsetReset{Req: 9, Sink: "s", Topic: "t", Partition: 2, Offset: 4})},
		"FuzzOffsetForTime":   {enc(&OffsetForTime{Req: 10, Topic: "app", Partition: 1, TimeMs: now.UnixMilli()})},
		"FuzzOffsetTime":      {enc(&OffsetTime{Req: 11, Status: TimeOK, Offset: 3})},
		"FuzzStatusRequest":   {enc(&StatusRequest{Req: 12})},
		"FuzzStatusResult":    {enc(&StatusResult{Req: 13, Status: Status{Version: StatusVersion, Aggregator: "a", Time: now}}), append(EncodeProduceHeader(nil, 1), `{"version":1,"agents":null}`...)},
		"FuzzError":           {encError(CodeAuth, "unknown token")},
		"FuzzHeartbeat":       {enc(&Heartbeat{Nonce: 42})},
		"FuzzAgentReport":     {enc(&AgentReport{Files: 2, LagBytes: 10, Lagging: []FileLag{{"app", "/var/log/a.log", 20, 10}}})},
		// Whole streams: preamble, Hello and frames; or frames alone.
		"FuzzServerHandshake": {
			append(Preamble(), frame(TypeHello, (&Hello{Role: RoleAgent, ID: "a"}).Encode(nil))...),
			append(append(Preamble(), frame(TypeHello, (&Hello{Role: RoleConsumer}).Encode(nil))...), frame(TypeFetch, (&Fetch{Topic: "app"}).Encode(nil))...),
			[]byte("LSHP\x01\x01\x00\x00\x00\x00\x00\x01\x01"),
			[]byte("LSHP\x09\x09\x00\x00"),
			[]byte("\x16\x03\x01\x00\xa5\x01\x00\x00"),
			append(Preamble(), 0xff, 0xff, 0xff, 0xff, 1),
		},
		"FuzzClientFrames": {
			frame(TypeProduceAck, (&ProduceAck{Seq: 1}).Encode(nil)),
			frame(TypeMetadataResult, (&MetadataResult{Partitions: []PartitionInfo{{"a", 1, 2, 3}}}).Encode(nil)),
			frame(TypeHeartbeat, (&Heartbeat{Nonce: 1}).Encode(nil)),
			frame(TypeError, encError(CodeProtocol, "bad")),
		},
	}
}

func encError(code ErrorCode, msg string) []byte {
	var e Enc
	e.U16(uint16(code))
	e.Str(msg)
	return e.B
}

// TestFuzzCorpus checks that every fuzz target has its seed corpus in
// testdata, or writes it with -update-corpus.
func TestFuzzCorpus(t *testing.T) {
	for name, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", name)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, s := range seeds {
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		if len(files) != len(seeds) {
			t.Errorf("%s: %d seed files, want %d (go test -run TestFuzzCorpus -update-corpus)", dir, len(files), len(seeds))
		}
	}
}

// roundTrip fuzzes a decoder whose accepted input encodes back to itself.
func roundTrip[T any, PT interface {
	*T
	codec
}](f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		in := bytes.Clone(p)
		m := PT(new(T))
		if err := m.Decode(p); err != nil {
			return
		}
		if !bytes.Equal(p, in) {
			t.Fatal("Decode changed its input")
		}
		if out := m.Encode(nil); !bytes.Equal(out, p) {
			t.Fatalf("decoded %+v; encodes to %x, not %x", m, out, p)
		}
	})
}

func FuzzHello(f *testing.F)           { roundTrip[Hello](f) }
func FuzzWelcome(f *testing.F)         { roundTrip[Welcome](f) }
func FuzzProduceAck(f *testing.F)      { roundTrip[ProduceAck](f) }
func FuzzFetch(f *testing.F)           { roundTrip[Fetch](f) }
func FuzzMetadata(f *testing.F)        { roundTrip[Metadata](f) }
func FuzzMetadataResult(f *testing.F)  { roundTrip[MetadataResult](f) }
func FuzzOffsetCommit(f *testing.F)    { roundTrip[OffsetCommit](f) }
func FuzzOffsetCommitted(f *testing.F) { roundTrip[OffsetCommitted](f) }
func FuzzOffsetFetch(f *testing.F)     { roundTrip[OffsetFetch](f) }
func FuzzOffsets(f *testing.F)         { roundTrip[Offsets](f) }
func FuzzOffsetReset(f *testing.F)     { roundTrip[OffsetReset](f) }
func FuzzOffsetForTime(f *testing.F)   { roundTrip[OffsetForTime](f) }
func FuzzOffsetTime(f *testing.F)      { roundTrip[OffsetTime](f) }
func FuzzStatusRequest(f *testing.F)   { roundTrip[StatusRequest](f) }
func FuzzHeartbeat(f *testing.F)       { roundTrip[Heartbeat](f) }
func FuzzAgentReport(f *testing.F)     { roundTrip[AgentReport](f) }

func FuzzProduce(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		seq, b, err := DecodeProduce(p)
		if err != nil {
			return
		}
		if out := append(EncodeProduceHeader(nil, seq), b...); !bytes.Equal(out, p) {
			t.Fatalf("seq %d batch %x: encodes to %x, not %x", seq, b, out, p)
		}
	})
}

func FuzzFetchResult(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		var m FetchResult
		if err := m.Decode(p); err != nil {
			return
		}
		if out := append(m.EncodeHeader(nil), m.Batches...); !bytes.Equal(out, p) {
			t.Fatalf("%+v: encodes to %x, not %x", m, out, p)
		}
	})
}

// The status document is JSON: its bytes need not come back the same, but
// what is accepted must encode to something accepted and equal.
func FuzzStatusResult(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		var m StatusResult
		if err := m.Decode(p); err != nil {
			return
		}
		out := m.Encode(nil)
		var again StatusResult
		if err := again.Decode(out); err != nil {
			t.Fatalf("re-encoded status does not decode: %v", err)
		}
		if !bytes.Equal(again.Encode(nil), out) {
			t.Fatal("status does not survive a second round trip")
		}
	})
}

func FuzzError(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		err := DecodeError(p)
		re, ok := err.(*RemoteError)
		if !ok {
			return
		}
		if out := encError(re.Code, re.Message); !bytes.Equal(out, p) {
			t.Fatalf("%v: encodes to %x, not %x", re, out, p)
		}
	})
}

// FuzzServerHandshake feeds a server a whole client stream: the preamble,
// the Hello, then frames, each decoded as the aggregator would.
func FuzzServerHandshake(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c := NewConn(fakeConn{bytes.NewBuffer(b)}, 1<<20)
		if _, err := c.ServerHandshake(0); err != nil {
			return
		}
		for {
			typ, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			if len(p) > 1<<20 {
				t.Fatalf("frame of %d bytes past the max", len(p))
			}
			decodeAny(typ, p)
		}
	})
}

// FuzzClientFrames feeds a client the frames a server sends.
func FuzzClientFrames(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c := NewConn(fakeConn{bytes.NewBuffer(b)}, 1<<20)
		for {
			typ, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			decodeAny(typ, p)
		}
	})
}

// decodeAny decodes p as a frame of type t.
func decodeAny(t Type, p []byte) {
	var m codec
	switch t {
	case TypeProduce:
		DecodeProduce(p)
	case TypeError:
		DecodeError(p)
	case TypeFetchResult:
		new(FetchResult).Decode(p)
	case TypeHello:
		m = new(Hello)
	case TypeWelcome:
		m = new(Welcome)
	case TypeProduceAck:
		m = new(ProduceAck)
	case TypeFetch:
		m = new(Fetch)
	case TypeMetadata:
		m = new(Metadata)
	case TypeMetadataResult:
		m = new(MetadataResult)
	case TypeOffsetCommit:
		m = new(OffsetCommit)
	case TypeOffsetCommitted:
		m = new(OffsetCommitted)
	case TypeOffsetFetch:
		m = new(OffsetFetch)
	case TypeOffsets:
		m = new(Offsets)
	case TypeOffsetReset:
		m = new(OffsetReset)
	case TypeOffsetForTime:
		m = new(OffsetForTime)
	case TypeOffsetTime:
		m = new(OffsetTime)
	case TypeStatus:
		m = new(StatusRequest)
	case TypeStatusResult:
		m = new(StatusResult)
	case TypeHeartbeat:
		m = new(Heartbeat)
	}
	if m != nil {
		m.Decode(p)
	}
}
