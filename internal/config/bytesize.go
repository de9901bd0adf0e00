package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteUnits are the suffixes ParseByteSize accepts. They are case-sensitive
// on purpose: "Mb" would read as megabits to some people.
var byteUnits = map[string]int64{
	"":    1,
	"B":   1,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
}

// ParseByteSize parses a size written as a plain number of bytes ("1048576")
// or a whole number with a unit: B, KB, MB and GB are powers of 1000, KiB,
// MiB and GiB powers of 1024 ("512KiB", "1 MiB", "10MB"). Negative and
// fractional sizes, unknown units and sizes beyond int64 are errors.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	switch {
	case strings.HasPrefix(t, "-"):
		return 0, fmt.Errorf("byte size %q is negative", s)
	case num == "":
		return 0, fmt.Errorf("invalid byte size %q", s)
	case strings.HasPrefix(unit, "."):
		return 0, fmt.Errorf("byte size %q is not a whole number", s)
	}
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("byte size %q has unknown unit %q", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return ByteSize(n * mult), nil
}

// String formats b with the largest unit that divides it exactly, so that
// ParseByteSize reads it back: 1048576 is "1MiB", 1500 is "1500B".
func (b ByteSize) String() string {
	units := []struct {
		name string
		n    ByteSize
	}{{"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}}
	for _, u := range units {
		if b != 0 && b%u.n == 0 {
			return strconv.FormatInt(int64(b/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalText formats b as String does, so that a config written back out
// reads as it was written in.
func (b ByteSize) MarshalText() ([]byte, error) {
	if b < 0 {
		return nil, errors.New("negative byte size")
	}
	return []byte(b.String()), nil
}

// UnmarshalText parses text with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = n
	return nil
}
