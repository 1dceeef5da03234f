// Package audit finds problems in a labelled feature matrix before a head is
// trusted on it: likely mislabelled rows (confident learning on out-of-fold
// probabilities), near-duplicates within a class, across classes and across
// splits (leakage), outliers far from every class, and class imbalance.
//
// It works on matrices only: features [N*D] row-major float32, labels
// [N] int32, out-of-fold class probabilities [N*K]; it knows nothing of
// images. Inputs are never modified; the feature matrix is not copied as a
// whole (normalised rows are made block by block).
package audit

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// Suspect is a row whose given label the out-of-fold predictions confidently
// disagree with.
type Suspect struct {
	Row       int     `json:"row"`
	Given     int32   `json:"given"`
	Suggested int32   `json:"suggested"`
	PGiven    float64 `json:"p_given"`     // out-of-fold probability of the given label
	PSuggest  float64 `json:"p_suggested"` // out-of-fold probability of the suggested label
}

// LabelIssues applies confident learning (Northcutt, Jiang & Chuang 2021)
// to out-of-fold probabilities probs [len(labels)*k], from models that
// never saw the row, as cleanlab's default (prune by noise rate) does:
//
//  1. The threshold of class j is the mean probability of j over the rows
//     labelled j. A row counts in the confident joint C[given][j] for the
//     most probable class j whose probability reaches its threshold.
//  2. Each row of C is rescaled to the class's row count; the off-diagonal
//     cell C[i][j] then estimates how many rows labelled i belong to j.
//  3. For each such cell, that many rows labelled i with the largest margin
//     p_j - p_i are suspects with suggestion j; a row whose most probable
//     class is its given label is never a suspect. (Also requiring the row
//     to lie off the confident joint's diagonal, cleanlab's "both", gained
//     0.02 precision and lost recall on Fashion-MNIST: not done.)
//
// Suspects come most confident first (largest p_suggested - p_given).
func LabelIssues(probs []float32, labels []int32, k int) ([]Suspect, error) {
	n := len(labels)
	if k < 2 || len(probs) != n*k {
		return nil, fmt.Errorf("label issues: %d probabilities for %d rows of %d classes", len(probs), n, k)
	}
	thr := make([]float64, k)
	cnt := make([]int, k)
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return nil, fmt.Errorf("label issues: row %d: label %d out of range [0, %d)", i, y, k)
		}
		thr[y] += float64(probs[i*k+int(y)])
		cnt[y]++
	}
	for j := range thr {
		if cnt[j] > 0 {
			thr[j] /= float64(cnt[j])
		} else {
			thr[j] = math.Inf(1) // a class nobody carries is never suggested
		}
	}
	joint := make([]float64, k*k)
	rowSum := make([]float64, k)
	for i, y := range labels {
		p := probs[i*k : (i+1)*k]
		best := -1
		for j, v := range p {
			if float64(v) >= thr[j] && (best < 0 || v > p[best]) {
				best = j
			}
		}
		if best >= 0 {
			joint[int(y)*k+best]++
			rowSum[y]++
		}
	}
	byRow := map[int]Suspect{}
	for gi := 0; gi < k; gi++ {
		if rowSum[gi] == 0 {
			continue
		}
		var mine []int
		for i, y := range labels {
			if int(y) == gi {
				mine = append(mine, i)
			}
		}
		for j := 0; j < k; j++ {
			if j == gi {
				continue
			}
			num := int(math.Round(joint[gi*k+j] / rowSum[gi] * float64(cnt[gi])))
			if num == 0 {
				continue
			}
			margin := func(i int) float64 { return float64(probs[i*k+j]) - float64(probs[i*k+gi]) }
			slices.SortStableFunc(mine, func(a, b int) int {
				ma, mb := margin(a), margin(b)
				switch {
				case ma > mb:
					return -1
				case ma < mb:
					return 1
				}
				return a - b
			})
			for _, i := range mine[:min(num, len(mine))] {
				p := probs[i*k : (i+1)*k]
				s := Suspect{Row: i, Given: int32(gi), Suggested: int32(j), PGiven: float64(p[gi]), PSuggest: float64(p[j])}
				if old, ok := byRow[i]; !ok || s.PSuggest > old.PSuggest {
					byRow[i] = s
				}
			}
		}
	}
	var out []Suspect
	for i, s := range byRow {
		p := probs[i*k : (i+1)*k]
		top := 0
		for j, v := range p {
			if v > p[top] {
				top = j
			}
		}
		if top != int(s.Given) {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		ma, mb := out[a].PSuggest-out[a].PGiven, out[b].PSuggest-out[b].PGiven
		if ma != mb {
			return ma > mb
		}
		return out[a].Row < out[b].Row
	})
	return out, nil
}

// Pair kinds of near-duplicates.
const (
	DupSameClass  = "same-class"  // both rows carry the same label, same split
	DupCrossClass = "cross-class" // different labels: at least one is wrong, or the classes overlap
	DupLeak       = "leak"        // one in train, the other in val or test: evaluation is optimistic
)

// Pair is two rows whose features are nearly parallel.
type Pair struct {
	A      int     `json:"a"` // A < B, rows of the matrix
	B      int     `json:"b"`
	Cosine float64 `json:"cosine"`
	Kind   string  `json:"kind"`
}

// Normalized returns the rows of X [n*d] centred on their mean and scaled
// to unit length, as float32 [n*d]: cosine similarity is then a dot
// product. Centring matters: pooled CNN features are all positive and
// every pair of raw vectors has a cosine near 1.
func Normalized(X []float32, n, d int) []float32 {
	mu := make([]float64, d)
	for i := 0; i < n; i++ {
		for j, v := range X[i*d : (i+1)*d] {
			mu[j] += float64(v)
		}
	}
	for j := range mu {
		mu[j] /= float64(max(1, n))
	}
	out := make([]float32, n*d)
	for i := 0; i < n; i++ {
		row := out[i*d : (i+1)*d]
		s := 0.0
		for j, v := range X[i*d : (i+1)*d] {
			e := float64(v) - mu[j]
			row[j] = float32(e)
			s += e * e
		}
		if s > 0 {
			inv := float32(1 / math.Sqrt(s))
			for j := range row {
				row[j] *= inv
			}
		}
	}
	return out
}

// NearDuplicates returns every pair of rows of the normalised matrix Z
// [n*d] (see Normalized) whose cosine is at least threshold, most similar
// first, classified with labels [n] and splits [n] (split names such as
// "train", "val", "test"; nil: all one split). It compares all pairs:
// O(n²·d), about 10 s for 10,000 rows of 768 on two cores.
func NearDuplicates(Z []float32, n, d int, labels []int32, splits []string, threshold float64) []Pair {
	workers := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	var pairs []Pair
	var wg sync.WaitGroup
	next := make(chan int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []Pair
			for i := range next {
				a := Z[i*d : (i+1)*d]
				for j := i + 1; j < n; j++ {
					if c := dot(a, Z[j*d:(j+1)*d]); c >= threshold {
						local = append(local, Pair{A: i, B: j, Cosine: c})
					}
				}
			}
			mu.Lock()
			pairs = append(pairs, local...)
			mu.Unlock()
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	for p := range pairs {
		a, b := pairs[p].A, pairs[p].B
		sa, sb := "", ""
		if splits != nil {
			sa, sb = splits[a], splits[b]
		}
		switch {
		case isTrain(sa) != isTrain(sb):
			pairs[p].Kind = DupLeak
		case labels[a] != labels[b]:
			pairs[p].Kind = DupCrossClass
		default:
			pairs[p].Kind = DupSameClass
		}
	}
	slices.SortFunc(pairs, func(x, y Pair) int {
		switch {
		case x.Cosine > y.Cosine:
			return -1
		case x.Cosine < y.Cosine:
			return 1
		case x.A != y.A:
			return x.A - y.A
		}
		return x.B - y.B
	})
	return pairs
}

// isTrain treats rows without a split folder as training rows.
func isTrain(split string) bool { return split == "" || split == "train" }

func dot(a, b []float32) float64 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return float64(s0 + s1 + s2 + s3)
}

// DefaultOutlierZ is the robust z-score below which Outliers flags a row.
const DefaultOutlierZ = 6

// Outlier is a row far from every class.
type Outlier struct {
	Row     int     `json:"row"`
	Nearest int32   `json:"nearest_class"` // class whose centroid is closest
	Cosine  float64 `json:"cosine"`        // to that centroid
	Score   float64 `json:"score"`         // robust z-score of Cosine (negative: far)
}

// Outliers scores each row of the normalised matrix Z [n*d] by its cosine
// to the nearest class centroid (its own class's centroid leaves the row
// out) and flags rows whose robust z-score, (cos - median)/(1.4826·MAD),
// is below -zCut. The cosines are skewed (they pile up below 1), so a cut
// of DefaultOutlierZ, well beyond a normal tail, keeps the bulk's own tail
// out. Outliers come farthest first.
func Outliers(Z []float32, n, d int, labels []int32, k int, zCut float64) []Outlier {
	if n < 3 {
		return nil
	}
	sum := make([]float64, k*d)
	cnt := make([]int, k)
	for i, y := range labels {
		cnt[y]++
		for j, v := range Z[i*d : (i+1)*d] {
			sum[int(y)*d+j] += float64(v)
		}
	}
	cosTo := func(i, c int) float64 {
		x := Z[i*d : (i+1)*d]
		m := cnt[c]
		own := int(labels[i]) == c
		if own {
			m--
		}
		if m <= 0 {
			return math.Inf(-1)
		}
		var dotv, nn float64
		for j, v := range x {
			s := sum[c*d+j]
			if own {
				s -= float64(v)
			}
			dotv += float64(v) * s
			nn += s * s
		}
		if nn == 0 {
			return 0
		}
		return dotv / math.Sqrt(nn)
	}
	best := make([]float64, n)
	near := make([]int32, n)
	for i := 0; i < n; i++ {
		best[i] = math.Inf(-1)
		for c := 0; c < k; c++ {
			if v := cosTo(i, c); v > best[i] {
				best[i], near[i] = v, int32(c)
			}
		}
	}
	sorted := append([]float64(nil), best...)
	slices.Sort(sorted)
	med := median(sorted)
	dev := make([]float64, n)
	for i, v := range best {
		dev[i] = math.Abs(v - med)
	}
	slices.Sort(dev)
	mad := 1.4826 * median(dev)
	if mad == 0 {
		return nil
	}
	var out []Outlier
	for i, v := range best {
		if z := (v - med) / mad; z < -zCut {
			out = append(out, Outlier{Row: i, Nearest: near[i], Cosine: v, Score: z})
		}
	}
	slices.SortStableFunc(out, func(a, b Outlier) int {
		switch {
		case a.Score < b.Score:
			return -1
		case a.Score > b.Score:
			return 1
		}
		return 0
	})
	return out
}

func median(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Balance summarises class sizes.
type Balance struct {
	Counts []int    `json:"counts"`
	Ratio  float64  `json:"ratio"` // largest class / smallest non-empty class
	Tiny   []int    `json:"tiny"`  // classes with fewer than the tiny limit
	Notes  []string `json:"notes,omitempty"`
}

// ClassBalance counts labels [n] over k classes and names the classes
// with fewer than tiny rows and a ratio above 3 (where a linear head's
// decision boundary visibly favours the large class; --balance helps).
func ClassBalance(labels []int32, classes []string, tiny int) Balance {
	b := Balance{Counts: make([]int, len(classes))}
	for _, y := range labels {
		b.Counts[y]++
	}
	lo, hi := -1, -1
	for c, v := range b.Counts {
		if v > 0 && (lo < 0 || v < b.Counts[lo]) {
			lo = c
		}
		if hi < 0 || v > b.Counts[hi] {
			hi = c
		}
		if v < tiny {
			b.Tiny = append(b.Tiny, c)
			b.Notes = append(b.Notes, fmt.Sprintf("class %q has %d images (fewer than %d): its figures swing with every image", classes[c], v, tiny))
		}
	}
	if lo >= 0 {
		b.Ratio = float64(b.Counts[hi]) / float64(b.Counts[lo])
		if b.Ratio > 3 {
			b.Notes = append(b.Notes, fmt.Sprintf("class %q has %.1fx the images of %q: consider --balance", classes[hi], b.Ratio, classes[lo]))
		}
	}
	return b
}
