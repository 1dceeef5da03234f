package main

import (
	"reflect"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"ht", "extract", "imgs", "--cache", "c", "--batch", "8"}, []string{"ht", "--cache", "c", "extract", "--batch", "8", "--", "imgs"}},
		{[]string{"ht", "--quiet", "train", "--classes", "7"}, []string{"ht", "--quiet", "train", "--classes", "7"}},
		{[]string{"ht", "predict", "a.jpg", "--top", "2", "b.jpg", "--json"}, []string{"ht", "--json", "predict", "--top", "2", "--", "a.jpg", "b.jpg"}},
		{[]string{"ht", "models", "pull", "resnet50", "--force"}, []string{"ht", "models", "pull", "--force", "--", "resnet50"}},
		{[]string{"ht", "predict", "--", "-odd.jpg"}, []string{"ht", "predict", "--", "-odd.jpg"}},
		{[]string{"ht", "extract", "imgs", "--cache=c"}, []string{"ht", "--cache=c", "extract", "--", "imgs"}},
	} {
		if got := interspersed(app, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("interspersed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

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
