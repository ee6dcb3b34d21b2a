package cassandra

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"logship/sinks/internal/sinktest"
)

// readDeadLetters parses a sink's dead-letter file; lines that do not
// parse are returned apart (torn by a crash).
func readDeadLetters(t testing.TB, dir, sink string) (letters []DeadLetter, torn []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, DeadLetterFile(sink)))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("dead-letter file does not end with a newline: %q", b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var d DeadLetter
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			torn = append(torn, sc.Text())
			continue
		}
		letters = append(letters, d)
	}
	return letters, torn
}

func offsetsOf(ds []DeadLetter) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.Offset)
	}
	return out
}

// TestRejectedRecordIsDeadLettered: one record Cassandra refuses spoils
// its batch; the sink splits the batch, writes the rest, dead-letters that
// one with its metadata and the error, logs it, and the partition goes on.
func TestRejectedRecordIsDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func(rows []Row) error {
			for _, r := range rows {
				if r.Offset == 7 {
					return errInvalid
				}
			}
			return nil
		})
		lg, log := sinktest.New(t)
		dir := t.TempDir()
		s := newTestSink(t, f, Options{Name: "cass-main", DeadLetterDir: dir, Logger: log})
		w := open(t, s)
		for o := range int64(20) {
			write(t, w, rec(o, "web-1", 1.5, "line"))
		}
		first := tick(t, w)
		synctest.Wait()
		if got := max(first, tick(t, w)); got != 20 {
			t.Fatalf("Tick: %d, want 20: the refused record must not hold the partition", got)
		}
		rows := f.byOffset(t, "agg-1", "app", 0)
		if len(rows) != 19 {
			t.Fatalf("%d rows written, want 19", len(rows))
		}
		if _, ok := rows[7]; ok {
			t.Fatal("the refused record is in the table")
		}
		letters, torn := readDeadLetters(t, dir, "cass-main")
		if len(letters) != 1 || len(torn) != 0 {
			t.Fatalf("dead letters %+v, torn %q; want one", letters, torn)
		}
		d := letters[0]
		line := "line"
		want := DeadLetter{
			Version: 1, Time: d.Time, Sink: "cass-main", Aggregator: "agg-1", Topic: "app", Partition: 0, Offset: 7,
			TS: "1970-01-01T00:00:01.5Z", Host: "web-1", Source: "/var/log/app.log",
			Kind: "rejected", Error: errInvalid.Error(), Line: &line,
		}
		if d.Line == nil || *d.Line != line || d.LineBase64 != nil {
			t.Fatalf("dead letter's line: %v %q", d.Line, d.LineBase64)
		}
		d.Line = want.Line
		if !reflectEqual(d, want) {
			t.Fatalf("dead letter\n%+v\nwant\n%+v", d, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, d.Time); err != nil {
			t.Fatalf("time %q: %v", d.Time, err)
		}
		if e := lg.Find(slog.LevelError, "records written to the dead-letter file: Cassandra will not take them"); len(e) != 1 || e[0].Attrs["offset"] != "7" {
			t.Fatalf("ERROR log lines: %+v", e)
		}
		st := s.Stats()
		if st.DeadLetters != 1 || st.Rows != 19 || st.Errors["rejected"] == 0 || st.Retries != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func reflectEqual(a, b DeadLetter) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestBrokenTableIsNotDeadLettered: when a read of the table fails too,
// the table is at fault, not the records: they are retried (as config
// errors), and written once the table is back.
func TestBrokenTableIsNotDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func([]Row) error { return errInvalid })
		f.setProbeErr(errInvalid)
		lg, log := sinktest.New(t)
		dir := t.TempDir()
		s := newTestSink(t, f, Options{DeadLetterDir: dir, Logger: log})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "x"), rec(1, "a", 1, "y"), rec(2, "a", 1, "z"))
		tick(t, w)
		time.Sleep(10 * time.Minute)
		if got := tick(t, w); got != -1 {
			t.Fatalf("Tick while the table is broken: %d", got)
		}
		if letters, _ := readDeadLetters(t, dir, "cass"); len(letters) != 0 {
			t.Fatalf("records dead-lettered for a broken table: %v", offsetsOf(letters))
		}
		// Each failed try counted once: as config, not also as rejected.
		synctest.Wait()
		if st := s.Stats(); st.Errors["config"] == 0 || st.Retries == 0 || st.Errors["rejected"] != uint64(len(f.attemptsCopy()))-st.Errors["config"] {
			t.Fatalf("stats %+v: want config errors and retries, every failed try counted once", st)
		}
		if len(lg.Find(slog.LevelError, "cassandra write failed, will retry")) == 0 {
			t.Fatal("no ERROR log for the broken table")
		}
		f.setFail(nil)
		f.setProbeErr(nil)
		time.Sleep(time.Minute)
		if got := tick(t, w); got != 3 {
			t.Fatalf("Tick once the table is back: %d, want 3", got)
		}
	})
}

// TestTooLargeIsDeadLettered: a record above max_record_bytes is never
// sent; it is dead-lettered, in base64 when it is not UTF-8.
func TestTooLargeIsDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		dir := t.TempDir()
		s := newTestSink(t, f, Options{DeadLetterDir: dir, MaxRecordBytes: 1000})
		w := open(t, s)
		big := bytes.Repeat([]byte{0xff, 'a'}, 600)
		write(t, w, rec(0, "a", 1, "small"), rec(1, "a", 1, string(big)), rec(2, "a", 1, "small"))
		next, err := w.Close(t.Context())
		if err != nil || next != 3 {
			t.Fatalf("Close: %d, %v; want 3", next, err)
		}
		for _, a := range f.attemptsCopy() {
			if slices.Contains(a.offsets, 1) {
				t.Fatalf("the large record was sent: %v", a.offsets)
			}
		}
		letters, _ := readDeadLetters(t, dir, "cass")
		if len(letters) != 1 || letters[0].Offset != 1 || letters[0].Kind != "too_large" ||
			letters[0].Line != nil || !bytes.Equal(letters[0].LineBase64, big) {
			t.Fatalf("dead letters: %+v", letters)
		}
		if rows := f.byOffset(t, "agg-1", "app", 0); len(rows) != 2 {
			t.Fatalf("%d rows, want 2", len(rows))
		}
	})
}

// TestMaxRetriesDeadLetters: with max_retries set, a batch that keeps
// failing goes to the dead-letter file after that many retries.
func TestMaxRetriesDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func([]Row) error { return errUnavailable })
		dir := t.TempDir()
		s := newTestSink(t, f, Options{DeadLetterDir: dir, MaxRetries: 3})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "x"), rec(1, "a", 1, "y"))
		tick(t, w)
		time.Sleep(time.Hour)
		if got := tick(t, w); got != 2 {
			t.Fatalf("Tick: %d, want 2", got)
		}
		if n := len(f.attemptsCopy()); n != 4 {
			t.Fatalf("%d attempts, want 4 (1 + 3 retries)", n)
		}
		letters, _ := readDeadLetters(t, dir, "cass")
		if !slices.Equal(offsetsOf(letters), []int64{0, 1}) || letters[0].Kind != "retries_exhausted" {
			t.Fatalf("dead letters %+v", letters)
		}
	})
}

// TestDeadLetterFileUnwritable: while the dead-letter file cannot be
// written, the record waits (never dropped) and the partition's prefix
// stays before it; once it can, the record is dead-lettered.
func TestDeadLetterFileUnwritable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail(func([]Row) error { return errInvalid })
		parent := t.TempDir()
		dir := filepath.Join(parent, "dl")
		if err := os.WriteFile(dir, nil, 0o644); err != nil { // a file where the directory should be
			t.Fatal(err)
		}
		s := newTestSink(t, f, Options{DeadLetterDir: dir})
		w := open(t, s)
		write(t, w, rec(0, "a", 1, "x"))
		tick(t, w)
		time.Sleep(time.Minute)
		if got := tick(t, w); got != -1 {
			t.Fatalf("Tick while dead letters cannot be written: %d", got)
		}
		if st := s.Stats(); st.Errors["dead_letter_io"] == 0 {
			t.Fatalf("stats %+v", st)
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if got := tick(t, w); got != 1 {
			t.Fatalf("Tick: %d, want 1", got)
		}
		if letters, _ := readDeadLetters(t, dir, "cass"); len(letters) != 1 {
			t.Fatalf("dead letters: %+v", letters)
		}
	})
}

// TestDeadLetterAfterTornLine: a line cut by a crash is ended before the
// next append, so every whole line parses.
func TestDeadLetterAfterTornLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DeadLetterFile("cass"))
	if err := os.WriteFile(path, []byte(`{"v":1,"time":"2025-`), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &deadLetters{dir: dir, sink: "cass"}
	r := rec(3, "a", 1, "x")
	row := Row{Key: Key{Topic: r.Topic, Host: r.Host}, Aggregator: r.Aggregator, Offset: 3, Line: r.Data}
	if _, err := d.write([]Row{row}, kindRejected, errInvalid); err != nil {
		t.Fatal(err)
	}
	letters, torn := readDeadLetters(t, dir, "cass")
	if len(letters) != 1 || letters[0].Offset != 3 || len(torn) != 1 {
		t.Fatalf("letters %+v, torn %q", letters, torn)
	}
}

// TestDeadLetterDirSyncedAfterFailure: a directory that got a new entry
// stays due for an fsync until one succeeds, so that a write that failed
// after the file's entry may have been made does not lose it (the next
// write finds the file there). Here the file is a dangling symlink: it
// does not exist, and cannot be created until its target's directory is.
func TestDeadLetterDirSyncedAfterFailure(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "dl")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(parent, "elsewhere")
	if err := os.Symlink(filepath.Join(target, "file"), filepath.Join(dir, DeadLetterFile("cass"))); err != nil {
		t.Fatal(err)
	}
	d := &deadLetters{dir: dir, sink: "cass"}
	row := Row{Key: Key{Topic: "app", Host: "a"}, Aggregator: "agg-1", Offset: 3, Line: []byte("x")}
	if _, err := d.write([]Row{row}, kindRejected, errInvalid); err == nil {
		t.Fatal("write through a dangling link succeeded")
	}
	if !d.unsynced[dir] {
		t.Fatalf("after a failed write, %s is not due for an fsync: %v", dir, d.unsynced)
	}
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := d.write([]Row{row}, kindRejected, errInvalid); err != nil {
		t.Fatal(err)
	}
	if len(d.unsynced) != 0 {
		t.Fatalf("after a write, directories still due for an fsync: %v", d.unsynced)
	}
	if letters, _ := readDeadLetters(t, dir, "cass"); len(letters) != 1 {
		t.Fatalf("dead letters: %+v", letters)
	}

	// MkdirAll's new directories are entries of their parents.
	d = &deadLetters{dir: filepath.Join(parent, "a", "b"), sink: "cass"}
	if _, err := d.write([]Row{row}, kindRejected, errInvalid); err != nil || len(d.unsynced) != 0 {
		t.Fatalf("write into new directories: %v; still due: %v", err, d.unsynced)
	}
}
