package head

import (
	"slices"
	"strings"
	"testing"
)

func labelsOf(counts ...int) []int32 {
	var y []int32
	for c, n := range counts {
		for i := 0; i < n; i++ {
			y = append(y, int32(c))
		}
	}
	return y
}

func TestPlanSplit(t *testing.T) {
	names := []string{"happy", "sad", "angry"}
	for _, tc := range []struct {
		name              string
		counts            []int
		val, test         float64
		wantVal, wantTest int    // rows
		valWhy, testWhy   string // substring of the reason, "" when made
	}{
		{"plenty", []int{50, 50, 50}, 0.1, 0.1, 15, 15, "", ""},
		{"eight images", []int{4, 4}, 0.1, 0.1, 0, 0, "needs at least 5 per class", "needs at least 5 per class"},
		{"36 images", []int{12, 12, 12}, 0.1, 0.1, 3, 3, "", ""},
		{"test only fits", []int{8, 9, 8}, 0.05, 0.2, 0, 6, `class "happy" has 8 images, a 5% validation split needs at least 10 per class`, ""},
		{"one tiny class", []int{40, 40, 2}, 0.2, 0, 0, 0, `class "angry" has 2 images`, ""},
		{"nothing asked", []int{3, 3, 3}, 0, 0, 0, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := labelsOf(tc.counts...)
			p, err := PlanSplit(y, names[:len(tc.counts)], SplitOptions{ValFrac: tc.val, TestFrac: tc.test, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Val) != tc.wantVal || len(p.Test) != tc.wantTest || len(p.Train)+len(p.Val)+len(p.Test) != len(y) {
				t.Fatalf("split %d/%d/%d, want val %d test %d of %d", len(p.Train), len(p.Val), len(p.Test), tc.wantVal, tc.wantTest, len(y))
			}
			for _, w := range []struct{ got, want, what string }{{p.ValSkipped, tc.valWhy, "val"}, {p.TestSkipped, tc.testWhy, "test"}} {
				if (w.want == "") != (w.got == "") || !strings.Contains(w.got, w.want) {
					t.Errorf("%s reason %q, want one containing %q", w.what, w.got, w.want)
				}
			}
			// every made split holds every class; training keeps >= 2 of each
			for _, s := range [][]int{p.Val, p.Test} {
				if len(s) == 0 {
					continue
				}
				seen := map[int32]bool{}
				for _, r := range s {
					seen[y[r]] = true
				}
				if len(seen) != len(tc.counts) {
					t.Errorf("a held-out split misses classes: %v", seen)
				}
			}
			tr := map[int32]int{}
			for _, r := range p.Train {
				tr[y[r]]++
			}
			for c := range tc.counts {
				if tr[int32(c)] < 2 {
					t.Errorf("class %d keeps %d training rows", c, tr[int32(c)])
				}
			}
			q, _ := PlanSplit(y, names[:len(tc.counts)], SplitOptions{ValFrac: tc.val, TestFrac: tc.test, Seed: 3})
			if !slices.Equal(p.Train, q.Train) || !slices.Equal(p.Test, q.Test) {
				t.Error("same seed, different split")
			}
		})
	}
	if _, err := PlanSplit(labelsOf(5, 5), names[:2], SplitOptions{ValFrac: 0.6, TestFrac: 0.5}); err == nil {
		t.Error("fractions summing above 1 accepted")
	}
	if _, err := PlanSplit([]int32{0, 7}, names[:2], SplitOptions{ValFrac: 0.1}); err == nil {
		t.Error("label out of range accepted")
	}
}
