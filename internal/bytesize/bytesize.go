// Package bytesize formats byte counts for people. Every size headtune
// prints (model listings, downloads, inspect, cache listings, exports) goes
// through Format, so one file size reads the same everywhere.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Format writes n bytes in SI units, the units registries and download
// sizes use: "999 B", "12 KB", "5.0 MB", "553 MB", "1.2 GB". Three
// significant digits at most, so columns stay narrow. A negative n (an
// unknown size) is "?".
func Format(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 100e6:
		return fmt.Sprintf("%.0f MB", float64(n)/1e6)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Parse reads a size a person wrote: a number with an optional unit, SI
// (B, KB, MB, GB, TB: powers of 1000) or binary (KiB, MiB, GiB, TiB:
// powers of 1024), case-insensitive, a space allowed before the unit:
// "4GiB", "512 MB", "65536". Fractions are allowed ("1.5GiB"); the result
// is rounded down to whole bytes and must be positive.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, such as 4GiB or 512MB", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, t[i:])
	}
	b := v * mult
	if !(b >= 1) || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	return int64(b), nil
}

// FormatBinary writes n bytes in binary units, as memory sizes are given:
// "64 KiB", "4 GiB", "1.5 GiB", "900 B".
func FormatBinary(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v := float64(n)
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v == math.Trunc(v) || u == 0 {
		return fmt.Sprintf("%.0f %s", v, units[u])
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
