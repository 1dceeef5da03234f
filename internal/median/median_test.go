package median

import (
	"slices"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 5}, 5},
		{[]float64{-1, 1}, 0},
	} {
		in := slices.Clone(tc.v)
		if got := Of(tc.v); got != tc.want {
			t.Errorf("Of(%v) = %v, want %v", in, got, tc.want)
		}
		if !slices.Equal(tc.v, in) {
			t.Errorf("Of reordered its input: %v, was %v", tc.v, in)
		}
	}
}

func TestOfEmptyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Of(nil) did not panic")
		}
	}()
	Of(nil)
}
