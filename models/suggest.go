package models

import (
	"sort"
	"strings"
)

// Suggest returns the catalog names close to name, closest first: names
// that contain it or that it contains (mobilenet → mobilenet-v2), and names
// within two edits of it (resnet05 → resnet50). It returns nil when none is
// close.
func Suggest(name string) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	low := strings.ToLower(name)
	for _, e := range catalog {
		n := strings.ToLower(e.Name)
		d := editDistance(low, n)
		switch {
		case len(low) >= 3 && (strings.Contains(n, low) || strings.Contains(low, n)):
			cs = append(cs, cand{e.Name, min(d, 1)})
		case d <= 2:
			cs = append(cs, cand{e.Name, d})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
