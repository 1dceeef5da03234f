package models

import (
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // must be among the suggestions; "" means none at all
	}{
		{"mobilenet", "mobilenetv2-imagenet"},
		{"resnet05", "resnet50"},
		{"RESNET50", "resnet50"},
		{"zzzzzz", ""},
	} {
		got := Suggest(tc.in)
		if tc.want == "" {
			if len(got) != 0 {
				t.Errorf("Suggest(%q) = %v, want none", tc.in, got)
			}
			continue
		}
		found := false
		for _, g := range got {
			found = found || g == tc.want
		}
		if !found {
			t.Errorf("Suggest(%q) = %v, want %s among them", tc.in, got, tc.want)
		}
	}
	if _, err := Lookup("mobilenet"); err == nil || !strings.Contains(err.Error(), "did you mean mobilenetv2 or mobilenetv2-imagenet") {
		t.Errorf("Lookup(mobilenet): %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"resnet50", "resnet05", 2}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
