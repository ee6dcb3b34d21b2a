package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"logship/config"
	"logship/logstore/batch"
	"logship/sinks"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type catOptions struct {
	aggregators []string
	topic       string
	sink        string // the consumer name to connect as; "" for none
	from        string
	format      string
	follow      bool
	sec         sinks.Security
}

func runCat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, level := flags("cat", "--aggregator HOST:PORT [--aggregator ...] --topic T [--sink S] [--from earliest|latest|OFFSET] [--format raw|json] [--follow]",
		"logship cat --aggregator 127.0.0.1:7450 --topic app --from earliest --format json", stderr)
	var o catOptions
	fs.Var((*stringList)(&o.aggregators), "aggregator", "aggregator address host:port (repeat for several)")
	fs.StringVar(&o.topic, "topic", "", "topic to print (required)")
	fs.StringVar(&o.sink, "sink", "", "connect as this sink, so that a token limited to it may read (cat commits no offset)")
	fs.StringVar(&o.from, "from", "earliest", "where to start in each partition: earliest, latest or an offset")
	fs.StringVar(&o.format, "format", "raw", "raw (each record and a newline) or json (one object per line)")
	fs.BoolVar(&o.follow, "follow", false, "keep printing new records until interrupted")
	secFlags := addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	sec, err := secFlags.security()
	if err != nil {
		return err
	}
	o.sec = sec
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case len(o.aggregators) == 0:
		return errors.New("--aggregator is required")
	case o.topic == "":
		return errors.New("--topic is required")
	case o.format != "raw" && o.format != "json":
		return fmt.Errorf("--format %q: want raw or json", o.format)
	}
	if err := batch.CheckName("topic", o.topic); err != nil {
		return fmt.Errorf("--topic: %w", err)
	}
	if err := checkSinkFlag(o.sink); err != nil {
		return err
	}
	if _, err := startOffset(o.from, 0, 0); err != nil {
		return err
	}
	if _, err := newLogger(stderr, *level); err != nil {
		return err
	}
	out := &recordPrinter{w: bufio.NewWriterSize(stdout, 256<<10), json: o.format == "json"}
	err = catAll(ctx, o, out)
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	if o.follow && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// startOffset maps --from to an offset of a partition spanning [start, end).
func startOffset(from string, start, end int64) (int64, error) {
	switch from {
	case "earliest":
		return start, nil
	case "latest":
		return end, nil
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--from %q: want earliest, latest or a non-negative offset", from)
	}
	return min(max(n, start), end), nil
}

// catAll prints every partition of the topic on every aggregator. Without
// follow it reads each partition up to the end it had when cat started,
// one partition after the other; with follow every partition gets a
// goroutine that long-polls for new records.
func catAll(ctx context.Context, o catOptions, out *recordPrinter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}
	found := false
	for _, addr := range o.aggregators {
		c, err := dial(ctx, o.sec, addr, o.sink)
		if err != nil {
			return err
		}
		defer c.Close()
		parts, err := c.Metadata(ctx, []string{o.topic})
		if err != nil {
			return aggError(addr, err)
		}
		found = found || len(parts) > 0
		for _, p := range parts {
			from, _ := startOffset(o.from, p.Start, p.End)
			if !o.follow {
				if err := catPartition(ctx, c, o, int(p.Partition), from, p.End, out); err != nil {
					return err
				}
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pc, err := dial(ctx, o.sec, addr, o.sink)
				if err != nil {
					fail(err)
					return
				}
				defer pc.Close()
				if err := catPartition(ctx, pc, o, int(p.Partition), from, -1, out); err != nil {
					fail(err)
				}
			}()
		}
	}
	if !found {
		cancel()
		wg.Wait()
		return fmt.Errorf("topic %q not found on %s", o.topic, strings.Join(o.aggregators, ", "))
	}
	if !o.follow {
		return nil
	}
	// Partitions that appear later are not followed: cat follows what
	// existed when it started.
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// catPartition prints records from offset up to end (or forever if end < 0).
func catPartition(ctx context.Context, c *sinks.Client, o catOptions, partition int, offset, end int64, out *recordPrinter) error {
	dec, err := sinks.NewDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	wait := 500 * time.Millisecond
	if end >= 0 {
		wait = 0
	}
	for end < 0 || offset < end {
		res, err := c.Fetch(ctx, o.topic, partition, offset, 4<<20, wait)
		if err != nil {
			return fmt.Errorf("partition %d: %w", partition, aggError(c.Addr(), err))
		}
		next := offset
		err = dec.Decode(c.Aggregator(), partition, res.Batches, offset, func(r *sinks.Record) error {
			if end >= 0 && r.Offset >= end {
				return nil
			}
			next = r.Offset + 1
			return out.print(r)
		})
		if err != nil {
			return err
		}
		if end < 0 {
			if err := out.flush(); err != nil {
				return err
			}
		}
		if next == offset && end >= 0 && res.End <= offset {
			return nil // the log ends before the end we were told: nothing more to read
		}
		offset = next
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// recordPrinter writes records as raw lines or JSON objects; safe for
// concurrent use.
type recordPrinter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	json bool
	buf  []byte
}

type jsonRecord struct {
	Topic      string `json:"topic"`
	Aggregator string `json:"aggregator"`
	Partition  int    `json:"partition"`
	Offset     int64  `json:"offset"`
	Timestamp  string `json:"timestamp"`
	Host       string `json:"host"`
	Source     string `json:"source"`
	Line       string `json:"line"`
}

func (p *recordPrinter) print(r *sinks.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.json {
		p.w.Write(r.Data)
		return p.w.WriteByte('\n')
	}
	b, err := json.Marshal(jsonRecord{
		Topic: r.Topic, Aggregator: r.Aggregator, Partition: r.Partition, Offset: r.Offset,
		Timestamp: time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano),
		Host:      r.Host, Source: r.Source, Line: string(r.Data),
	})
	if err != nil {
		return err
	}
	p.w.Write(b)
	return p.w.WriteByte('\n')
}

func (p *recordPrinter) flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Flush()
}

// securityFlags are the flags every consumer command (cat, offsets,
// status) takes to connect as the sinks do: TLS files and a token.
type securityFlags struct {
	ca, cert, key, serverName, tokenFile string
	tls                                  bool
}

// addSecurityFlags registers the connection's security flags on fs.
func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	f := &securityFlags{}
	fs.BoolVar(&f.tls, "tls", false, "connect over TLS (implied by the other --tls-* flags)")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM file of the CA that signs the aggregators' certificates (default: the system's)")
	fs.StringVar(&f.cert, "tls-cert", "", "PEM file of this client's certificate, for mutual TLS")
	fs.StringVar(&f.key, "tls-key", "", "PEM file of the key of --tls-cert")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name the aggregators' certificates must carry (default: each address's host)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the token the aggregators expect (default: $LOGSHIP_TOKEN); resets need one with the admin role")
	return f
}

// security builds the sinks.Security the flags describe, with the
// config's code: the flags stand for the keys of a client's config.
func (f *securityFlags) security() (sinks.Security, error) {
	var sec sinks.Security
	auth := config.ClientAuth{Token: os.Getenv("LOGSHIP_TOKEN"), TokenFile: f.tokenFile}
	if f.tokenFile != "" {
		auth.Token = ""
	}
	tok, err := auth.Secret()
	if err != nil {
		return sec, flagError(err)
	}
	sec.Token = tok
	t := config.TLS{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: f.serverName, Enabled: f.tls}
	if sec.TLS, err = t.ClientConfig(time.Now(), nil); err != nil {
		return sec, flagError(err)
	}
	return sec, nil
}

// flagError names, in an error of loading the files of the security
// flags, the flag instead of the config key it stands for.
func flagError(err error) error {
	var ke *config.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	flag, ok := map[string]string{"token_file": "--token-file", "cert_file": "--tls-cert", "key_file": "--tls-key", "ca_file": "--tls-ca"}[ke.Key]
	if !ok {
		return ke.Err
	}
	return fmt.Errorf("%s: %w", flag, ke.Err)
}
