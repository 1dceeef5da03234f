package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		w, h int
		ok   bool
	}{{"", 0, 0, true}, {"224x224", 224, 224, true}, {"320x240", 320, 240, true}, {"299", 299, 299, true}, {"0x5", 0, 0, false}, {"abc", 0, 0, false}} {
		w, h, err := parseSize(tc.in)
		if (err == nil) != tc.ok || w != tc.w || h != tc.h {
			t.Errorf("parseSize(%q) = %d, %d, %v", tc.in, w, h, err)
		}
	}
}
