//go:build unix

package file_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"logship/sinks"
	"logship/sinks/file"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU seconds per GB of record data.
func reportCPU(b *testing.B, start time.Duration, bytes int64) {
	b.ReportMetric((cpuTime(b)-start).Seconds()/(float64(bytes)/1e9), "cpu-s/GB")
}

// benchRecord is a 200-byte log line, like an access log's.
var benchRecord = []byte(`10.1.2.3 - - [01/May/2024:13:04:05 +0000] "GET /api/v1/items?id=123456&page=2 HTTP/1.1" 200 5123 "https://example.com/list" "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/125.0" 0.012`)

// BenchmarkSink measures the engine's cost per byte through the FS
// interface on a local directory (the HDFS sink's code path, without the
// network), for each format and compression, beside a plain buffered
// write of the same bytes to a file (the baseline).
//
//	go test -run '^$' -bench BenchmarkSink -benchtime 2000000x ./sinks/file
func BenchmarkSink(b *testing.B) {
	line := int64(len(benchRecord) + 1)
	b.Run("baseline=bufio-write", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		bw := bufio.NewWriterSize(f, 8<<20)
		b.SetBytes(line)
		b.ReportAllocs()
		start := cpuTime(b)
		b.ResetTimer()
		for b.Loop() {
			bw.Write(benchRecord)
			bw.WriteByte('\n')
		}
		bw.Flush()
		f.Sync()
		b.StopTimer()
		reportCPU(b, start, int64(b.N)*line)
	})
	for _, format := range []string{file.FormatLines, file.FormatJSON} {
		for _, comp := range []string{file.CompressionNone, file.CompressionGzip, file.CompressionZstd} {
			b.Run("format="+format+"/compression="+comp, func(b *testing.B) {
				ctx := context.Background()
				s, err := file.New(file.Options{
					Dir: b.TempDir(), Path: "{topic}/{yyyy}/{mm}/{dd}/{hh}", Format: format, Compression: comp,
					BufferSize: 8 << 20, RollSize: 128 << 20, RollInterval: time.Hour, IdleTimeout: time.Hour,
				})
				if err != nil {
					b.Fatal(err)
				}
				w, _, err := s.Open(ctx, sinks.Partition{Aggregator: "agg-1", Topic: "app", Partition: 0, Committed: -1})
				if err != nil {
					b.Fatal(err)
				}
				r := &sinks.Record{Aggregator: "agg-1", Topic: "app", Time: time.Now().UnixNano(), AppendTime: time.Now().UnixMilli(),
					Host: "web-1", Source: "/var/log/nginx/access.log", Data: benchRecord}
				b.SetBytes(line)
				b.ReportAllocs()
				start := cpuTime(b)
				b.ResetTimer()
				for b.Loop() {
					if err := w.Write(ctx, r); err != nil {
						b.Fatal(err)
					}
					r.Offset++
				}
				if _, err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				reportCPU(b, start, int64(b.N)*line)
				st := s.Stats()
				b.ReportMetric(float64(st.Bytes)/float64(int64(b.N)*line), "out/in")
			})
		}
	}
}
