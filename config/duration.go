package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration. In TOML it is a string of numbers and units
// as time.ParseDuration takes them: "250ms", "5s", "15m", "1h30m". A bare
// integer is refused: its unit would be a guess.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses s with time.ParseDuration. Errors start with
// `invalid duration "…"`.
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number and a unit, like \"250ms\", \"5s\" or \"1h\"", s)
	}
	return Duration(v), nil
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
	return fmt.Errorf("want a duration like \"250ms\", \"5s\" or \"1h\", got %s", describe(v))
}
