package config

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Size is a number of bytes. In TOML it is an integer (bytes) or a string
// of a number and a unit, like "64MiB", "1.5GiB", "10MB", "4kB" or "100B".
type Size int64

// Units of Size. The binary ones (KiB, MiB, ...) are powers of 1024, the
// decimal ones (KB, MB, ...; written "kB", "MB", ... in a config) powers of
// 1000.
const (
	B   Size = 1
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
	KB  Size = 1e3
	MB  Size = 1e6
	GB  Size = 1e9
	TB  Size = 1e12
)

// sizeUnits is the order String prefers: the largest unit that divides the
// value exactly, binary before decimal.
var sizeUnits = [...]struct {
	name string
	n    Size
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"kB", KB},
	{"B", B},
}

const sizeUnitList = "B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"

// ParseSize parses a size such as "64MiB", "1.5GiB", "10MB", "4kB", "100B"
// or "4096" (bytes). Units are case-sensitive; a space between the number
// and the unit is allowed. The result must be a whole number of bytes.
// Errors start with `invalid size "…"` and say what is wrong.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("invalid size %q: want a number and a unit, like \"64MiB\"", s)
	}
	mult := Size(0)
	for _, u := range sizeUnits {
		if u.name == unit {
			mult = u.n
		}
	}
	if unit == "" {
		mult = B
	}
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want %s)", s, unit, sizeUnitList)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: want a number and a unit, like \"64MiB\"", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(mult)))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(r.Num().Int64()), nil
}

// String formats s with the largest unit that divides it exactly, so that
// ParseSize(s.String()) == s: "256KiB", "10MB", "1000001B".
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	for _, u := range sizeUnits {
		if s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	panic("BUG: config: no unit divides a size")
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSize.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalTOML implements toml.Unmarshaler: a TOML integer is a number of
// bytes, a string is parsed with ParseSize.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		return s.UnmarshalText([]byte(v))
	}
	return fmt.Errorf("want a size like 65536 or \"64MiB\", got %s", describe(v))
}
