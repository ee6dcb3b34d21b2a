package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration. In TOML it is a string of numbers and units
// as time.ParseDuration takes them: "250ms", "5s", "15m", "1h30m", and
// also days, "d", of exactly 24h, first: "7d", "1.5d", "1d12h". A bare
// integer is refused: its unit would be a guess.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses s with time.ParseDuration, after a leading number
// of days ("7d", "1d12h"; a day is 24h, whatever the calendar says).
// Errors start with `invalid duration "…"`.
func ParseDuration(s string) (Duration, error) {
	v, err := parseDays(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number and a unit, like \"250ms\", \"5s\", \"1h\" or \"7d\"", s)
	}
	return Duration(v), nil
}

// parseDays parses an optional sign and number of days followed by "d",
// then the rest with time.ParseDuration.
func parseDays(s string) (time.Duration, error) {
	i := strings.IndexByte(s, 'd')
	if i < 0 {
		return time.ParseDuration(s)
	}
	num, rest := s[:i], s[i+1:]
	neg := strings.HasPrefix(num, "-")
	num = strings.TrimPrefix(num, "-")
	if num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 || strings.HasPrefix(rest, "-") {
		return 0, errors.New("bad days")
	}
	days, err := strconv.ParseFloat(num, 64)
	if err != nil || days*24 > float64(math.MaxInt64/int64(time.Hour)) {
		return 0, errors.New("bad days")
	}
	v := time.Duration(days * float64(24*time.Hour))
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || v > math.MaxInt64-r {
			return 0, errors.New("bad rest")
		}
		v += r
	}
	if neg {
		v = -v
	}
	return v, nil
}

// String formats d like time.Duration.String without its trailing zero
// units: "15m" rather than "15m0s", "1h" rather than "1h0m0s". The result
// parses back to d.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalTOML implements toml.Unmarshaler: only a string is a duration.
func (d *Duration) UnmarshalTOML(v any) error {
	if s, ok := v.(string); ok {
		return d.UnmarshalText([]byte(s))
	}
	return fmt.Errorf("want a duration like \"250ms\", \"5s\", \"1h\" or \"7d\", got %s", describe(v))
}
