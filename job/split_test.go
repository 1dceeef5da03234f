package job

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/pipeline"
)

// features builds a view of n rows per class, with the given split folder
// names cycling over the rows ("" for a dataset without split folders).
func features(classes []string, perClass int, splits ...string) *pipeline.Features {
	f := &pipeline.Features{Run: &pipeline.LastRun{View: "/cache/x/views/ds.csv"}, Classes: classes, D: 1}
	for c, name := range classes {
		for i := 0; i < perClass; i++ {
			sp := ""
			if len(splits) > 0 {
				sp = splits[i%len(splits)]
			}
			var key featcache.Key
			key[0], key[1] = byte(c), byte(i)
			f.Entries = append(f.Entries, featcache.ViewEntry{Path: fmt.Sprintf("%s/%d.png", name, i), Label: name, Split: sp, Key: key})
			f.Labels = append(f.Labels, int32(c))
			f.Splits = append(f.Splits, sp)
			f.Paths = append(f.Paths, fmt.Sprintf("%s/%d.png", name, i))
			f.X = append(f.X, float32(i))
		}
	}
	f.N = len(f.Labels)
	return f
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		f                     *pipeline.Features
		opt                   SplitOptions
		source                string
		train, val, test      int
		valFromTrainOnlyFolds bool
	}{
		{"stratified", features([]string{"a", "b"}, 10), SplitOptions{Val: 0.1, Test: 0.2, Seed: 1}, "stratified", 14, 2, 4, false},
		{"no val or test", features([]string{"a", "b"}, 10), SplitOptions{Seed: 1}, "stratified", 20, 0, 0, false},
		{"folders", features([]string{"a", "b"}, 10, "train", "train", "train", "val", "test"), SplitOptions{Val: 0.5, Test: 0.5, Seed: 1}, "folders", 12, 4, 4, false},
		{"folders without val", features([]string{"a", "b"}, 10, "train", "train", "train", "train", "test"), SplitOptions{Val: 0.25, Seed: 1}, "folders", 12, 4, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Split(tc.f, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			tr, va, te := Rows(s)
			if s.Source != tc.source || len(tr) != tc.train || len(va) != tc.val || len(te) != tc.test {
				t.Fatalf("%s split %d/%d/%d, want %s %d/%d/%d", s.Source, len(tr), len(va), len(te), tc.source, tc.train, tc.val, tc.test)
			}
			seen := map[int]int{}
			for _, set := range [][]int{tr, va, te} {
				for _, r := range set {
					seen[r]++
				}
			}
			if len(seen) != tc.f.N {
				t.Errorf("the sets cover %d of %d rows", len(seen), tc.f.N)
			}
			for r, n := range seen {
				if n != 1 {
					t.Errorf("row %d is in %d sets", r, n)
				}
			}
			if tc.source == "folders" {
				for _, r := range te {
					if tc.f.Splits[r] != "test" {
						t.Errorf("test row %d comes from the %q folder", r, tc.f.Splits[r])
					}
				}
			}
			if tc.valFromTrainOnlyFolds {
				for _, r := range va {
					if tc.f.Splits[r] != "train" {
						t.Errorf("validation row %d drawn from the %q folder", r, tc.f.Splits[r])
					}
				}
			}
			again, _ := Split(tc.f, tc.opt)
			if !reflect.DeepEqual(again, s) {
				t.Errorf("the same options gave another split")
			}
			if err := checkSplit(s, tc.f); err != nil {
				t.Errorf("checkSplit on the same view: %v", err)
			}
		})
	}
}

func TestSplitSeedMatters(t *testing.T) {
	f := features([]string{"a", "b", "c"}, 30)
	a, _ := Split(f, SplitOptions{Val: 0.1, Test: 0.2, Seed: 1})
	b, _ := Split(f, SplitOptions{Val: 0.1, Test: 0.2, Seed: 2})
	if reflect.DeepEqual(a.TestIndex, b.TestIndex) {
		t.Errorf("seeds 1 and 2 drew the same test rows %v", a.TestIndex)
	}
}

// TestCheckSplitNoticesChangedView: a view rewritten since training (an
// image added, or a label changed) no longer matches the recorded rows.
func TestCheckSplitNoticesChangedView(t *testing.T) {
	f := features([]string{"a", "b"}, 10)
	s, _ := Split(f, DefaultSplit)
	grown := features([]string{"a", "b"}, 11)
	if err := checkSplit(s, grown); err == nil || !strings.Contains(err.Error(), "changed since the head was trained") {
		t.Errorf("grown view: %v", err)
	}
	relabelled := features([]string{"a", "b"}, 10)
	relabelled.Entries[3].Label = "b"
	if err := checkSplit(s, relabelled); err == nil {
		t.Error("a relabelled view passed the check")
	}
}

func TestRemapLabels(t *testing.T) {
	f := features([]string{"a", "c"}, 2)
	got, err := remapLabels(f.Classes, f.Labels, []string{"c", "b", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{2, 2, 0, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	if _, err := remapLabels(f.Classes, f.Labels, []string{"a", "b"}); err == nil || !strings.Contains(err.Error(), `class "c"`) {
		t.Errorf("unknown class: %v", err)
	}
}
