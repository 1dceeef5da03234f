// Package bytesize formats byte counts for people. Every size headtune
// prints (model listings, downloads, inspect, cache listings, exports) goes
// through Format, so one file size reads the same everywhere.
package bytesize

import "fmt"

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
