// Package median computes the median of repeated measurements, the figure
// headtune's benchmark programs report: on a shared machine it is less
// disturbed by the odd slow run than the mean.
package median

import "slices"

// Of returns the median of v: its middle value, or the mean of the two
// middle values when len(v) is even. v is not modified. It panics on an
// empty v, which has no median.
func Of(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
