package config

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  string
	}{
		{"64MiB", 64 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"512KiB", 512 << 10, ""},
		{"2TiB", 2 << 40, ""},
		{"10MB", 10e6, ""},
		{"4kB", 4000, ""},
		{"3GB", 3e9, ""},
		{"100B", 100, ""},
		{"4096", 4096, ""},
		{"0", 0, ""},
		{" 64 MiB ", 64 << 20, ""},
		{"1.5GiB", 3 << 29, ""},
		{"0.5kB", 500, ""},
		{"", 0, `invalid size "": want a number and a unit, like "64MiB"`},
		{"MiB", 0, `invalid size "MiB": want a number and a unit, like "64MiB"`},
		{"-1KiB", 0, `invalid size "-1KiB": want a number and a unit, like "64MiB"`},
		{"1.2.3B", 0, `invalid size "1.2.3B": want a number and a unit, like "64MiB"`},
		{".5MiB", 0, `invalid size ".5MiB": want a number and a unit, like "64MiB"`},
		{"64mb", 0, `invalid size "64mb": unknown unit "mb" (want B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"64KB", 0, `invalid size "64KB": unknown unit "KB" (want B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1e3", 0, `invalid size "1e3": unknown unit "e3" (want B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1.1KiB", 0, `invalid size "1.1KiB": not a whole number of bytes`},
		{"9000000TiB", 0, `invalid size "9000000TiB": too large`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %d", int64(got), err, int64(tt.want))
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1kB"},
		{1024, "1KiB"},
		{256 * KiB, "256KiB"},
		{16 * MiB, "16MiB"},
		{3 << 29, "1536MiB"},
		{10 * MB, "10MB"},
		{1000001, "1000001B"},
		{1<<32 - 1, "4294967295B"},
		{-2 * KiB, "-2KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if tt.in < 0 {
				return
			}
			back, err := ParseSize(tt.want)
			if err != nil || back != tt.in {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.want, back, err, tt.in)
			}
		})
	}
}

func TestSizeUnmarshalTOML(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want Size
		err  string
	}{
		{"int", int64(65536), 64 * KiB, ""},
		{"string", "64KiB", 64 * KiB, ""},
		{"negative", int64(-1), 0, "invalid size -1: must not be negative"},
		{"float", 1.5, 0, `want a size like 65536 or "64MiB", got float 1.5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Size
			err := s.UnmarshalTOML(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || s != tt.want {
				t.Fatalf("got %v, %v; want %v", s, err, tt.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in     string
		want   time.Duration
		string string // String() of the result
		err    string
	}{
		{"250ms", 250 * time.Millisecond, "250ms", ""},
		{"5s", 5 * time.Second, "5s", ""},
		{"15m", 15 * time.Minute, "15m", ""},
		{"1h", time.Hour, "1h", ""},
		{"1h30m", 90 * time.Minute, "1h30m", ""},
		{"90s", 90 * time.Second, "1m30s", ""},
		{"1h0m1s", time.Hour + time.Second, "1h0m1s", ""},
		{"1.5s", 1500 * time.Millisecond, "1.5s", ""},
		{"0s", 0, "0s", ""},
		{"-1s", -time.Second, "-1s", ""},
		{"5 s", 0, "", `invalid duration "5 s": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1d", 24 * time.Hour, "24h", ""},
		{"7d", 7 * 24 * time.Hour, "168h", ""},
		{"1.5d", 36 * time.Hour, "36h", ""},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, "36h30m", ""},
		{"-2d", -48 * time.Hour, "-48h", ""},
		{"0d", 0, "0s", ""},
		{"d", 0, "", `invalid duration "d": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1dd", 0, "", `invalid duration "1dd": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1d-1h", 0, "", `invalid duration "1d-1h": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1e3d", 0, "", `invalid duration "1e3d": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1.2.3d", 0, "", `invalid duration "1.2.3d": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"999999999d", 0, "", `invalid duration "999999999d": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"1 d", 0, "", `invalid duration "1 d": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
		{"5", 0, "", `invalid duration "5": want a number and a unit, like "250ms", "5s", "1h" or "7d"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalTOML(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, %v; want error %q", d, err, tt.err)
				}
				return
			}
			if err != nil || d.D() != tt.want {
				t.Fatalf("got %v, %v; want %v", d.D(), err, tt.want)
			}
			if got := d.String(); got != tt.string {
				t.Errorf("String() = %q, want %q", got, tt.string)
			}
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, d)
			}
		})
	}
	t.Run("integer", func(t *testing.T) {
		var d Duration
		want := `want a duration like "250ms", "5s", "1h" or "7d", got integer 5`
		if err := d.UnmarshalTOML(int64(5)); err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	})
}
