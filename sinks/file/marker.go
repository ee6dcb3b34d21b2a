package file

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"strings"

	"logship/internal/statefile"
)

// Marker format, version 1 (doc.go). Format: do not change; a new body
// schema gets a new version, and Open reads version 1 too.
const (
	markerKind    = "sink-marker"
	markerVersion = 1
	markerSuffix  = ".marker"
)

// marker is what a partition's marker file says: where the partition's
// published files end (the newest file, its epoch and next offset), and
// the file being published, if a crash may have stopped the sink between
// its rename and the marker that follows it. Epoch, Next and File always
// describe a publish that completed; a pending file of a new epoch does
// not move them until it is known to be published.
type marker struct {
	Topic      string `json:"topic"`
	Aggregator string `json:"aggregator"`
	Partition  int    `json:"partition"`
	Epoch      uint64 `json:"epoch"`
	// Next is the offset after the last record of the newest published
	// file, File that file's path relative to the sink's directory.
	Next int64  `json:"next"`
	File string `json:"file"`
	// Pending, when set, is a publish under way: its temporary file was
	// closed complete, and it is renamed to File after this marker is
	// durable. Recovery looks at whether Pending.File exists.
	Pending *pendingFile `json:"pending,omitempty"`
}

type pendingFile struct {
	Tmp  string `json:"tmp"`  // relative to the sink's directory
	File string `json:"file"` // relative to the sink's directory
	Next int64  `json:"next"`
}

// markerName is the base name of a partition's marker in StateDir.
func markerName(topic, agg string, partition int) string {
	return strings.TrimSuffix(partitionPrefix(topic, agg, partition), sep) + markerSuffix
}

// encodeMarker returns a marker file's bytes.
func encodeMarker(m *marker) []byte {
	body, err := json.Marshal(m)
	if err != nil {
		panic("BUG: marker: " + err.Error())
	}
	return statefile.Encode(markerKind, markerVersion, append(body, '\n'))
}

// decodeMarker checks a marker file's bytes against the partition it
// should be of. A damaged or foreign file is a *statefile.CorruptError.
func decodeMarker(name string, data []byte, topic, agg string, partition int) (*marker, error) {
	v, body, err := statefile.Decode(name, markerKind, data)
	if err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*marker, error) {
		return nil, &statefile.CorruptError{Path: name, Reason: fmt.Sprintf(format, a...)}
	}
	if v != markerVersion {
		return bad("version %d: this logship reads version %d", v, markerVersion)
	}
	var m marker
	if err := json.Unmarshal(body, &m); err != nil {
		return bad("body: %v", err)
	}
	if m.Topic != topic || m.Aggregator != agg || m.Partition != partition {
		return bad("is the marker of %s/%s/%d", m.Aggregator, m.Topic, m.Partition)
	}
	if err := m.check(); err != nil {
		return bad("%v", err)
	}
	return &m, nil
}

// check checks that the names in m are what the sink writes, so that
// recovery never touches a path outside the sink's directory.
func (m *marker) check() error {
	file := func(p string, next int64, epoch uint64) error {
		if !fs.ValidPath(p) || strings.HasPrefix(p, TmpDir+"/") || strings.HasPrefix(p, StateDir+"/") {
			return fmt.Errorf("file %q: not a published file's path", p)
		}
		n, err := ParseName(path.Base(p))
		if err != nil {
			return err
		}
		if n.Topic != m.Topic || n.Aggregator != m.Aggregator || n.Partition != m.Partition || n.Next() != next || n.Epoch != epoch {
			return fmt.Errorf("file %q does not end at offset %d of epoch %d of this partition", p, next, epoch)
		}
		return nil
	}
	if m.File == "" {
		// Nothing published yet: a first publish's intent, or the marker
		// Open rewrote after settling one that had not completed.
		if m.Next != 0 || m.Epoch != 0 {
			return fmt.Errorf("no file, but next offset %d, epoch %d", m.Next, m.Epoch)
		}
	} else if err := file(m.File, m.Next, m.Epoch); err != nil {
		return err
	}
	if p := m.Pending; p != nil {
		n, err := ParseName(path.Base(p.File))
		if err != nil {
			return err
		}
		if n.Epoch < m.Epoch {
			return fmt.Errorf("pending file %q of an older epoch than %d", p.File, m.Epoch)
		}
		if err := file(p.File, p.Next, n.Epoch); err != nil {
			return err
		}
		if path.Dir(p.Tmp) != TmpDir || !isTmpName(path.Base(p.Tmp), partitionPrefix(m.Topic, m.Aggregator, m.Partition)) {
			return fmt.Errorf("temporary file %q: not this partition's", p.Tmp)
		}
	}
	return nil
}

// readMarker reads the partition's marker: nil when there is none. A
// damaged marker is set aside as .broken and logged: recovery then scans
// the published files, as if there were none.
func (w *writer) readMarker(fsys FS) (*marker, error) {
	data, err := fsys.ReadFile(w.marker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read marker: %w", err)
	}
	m, err := decodeMarker(w.marker, data, w.topic, w.agg, w.part)
	if errors.Is(err, statefile.ErrCorrupt) {
		broken := w.marker + ".broken"
		if rerr := fsys.Rename(w.marker, broken); rerr != nil {
			return nil, fmt.Errorf("set aside damaged marker: %w (%w)", rerr, err)
		}
		w.log.Error("damaged marker set aside; finding the partition's files by listing them", "file", broken, "err", err)
		return nil, nil
	}
	return m, err
}

// writeMarker replaces the partition's marker atomically: a temporary file
// beside it, written, synced and closed, renamed over it, and the
// directory synced (STYLE 6). A crash leaves the old marker or the new one.
func (w *writer) writeMarker(fsys FS, m *marker) error {
	tmp := fmt.Sprintf("%s.%0*x%s", w.marker, randDigits, rand.Uint64(), tmpSuffix)
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeMarker(m))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, w.marker)
	}
	if err != nil {
		if rerr := fsys.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			w.log.Warn("removing a marker's temporary file", "file", tmp, "err", rerr)
		}
		return err
	}
	return fsys.SyncDir(path.Dir(w.marker))
}

// isMarkerTmp reports whether n is a temporary file of the marker whose
// base name is base.
func isMarkerTmp(n, base string) bool {
	rest, ok := strings.CutPrefix(n, base+".")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, tmpSuffix)
	return ok && len(rest) == randDigits && strings.Trim(rest, hexDigits) == ""
}
