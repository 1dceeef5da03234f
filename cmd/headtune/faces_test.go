package main

import (
	"reflect"
	"testing"
)

func TestFacesArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"headtune", "extract", "d", "--faces"}, []string{"headtune", "extract", "d", "--faces"}},
		{[]string{"headtune", "extract", "d", "--faces", "all"}, []string{"headtune", "extract", "d", "--faces", "--faces-all"}},
		{[]string{"headtune", "predict", "--faces", "largest", "p"}, []string{"headtune", "predict", "--faces", "--faces-largest", "p"}},
		{[]string{"headtune", "extract", "--faces=all", "d"}, []string{"headtune", "extract", "--faces", "--faces-all", "d"}},
		{[]string{"headtune", "predict", "--faces", "photos"}, []string{"headtune", "predict", "--faces", "photos"}},
		{[]string{"headtune", "predict", "--", "--faces", "all"}, []string{"headtune", "predict", "--", "--faces", "all"}},
	}
	for _, tc := range tests {
		if got := facesArgs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("facesArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
