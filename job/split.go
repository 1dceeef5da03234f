package job

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/pipeline"
)

// SplitOptions say how to divide a dataset that has no split folders of
// its own.
type SplitOptions struct {
	// Val and Test are the fractions of each class held out for
	// validation and test (used where the dataset has no val/ or test/
	// folder). Zero means none.
	Val, Test float64
	// Seed makes the draw repeatable.
	Seed int64
}

// DefaultSplit is what the headtune command uses: 10% validation, 10% test,
// seed 1.
var DefaultSplit = SplitOptions{Val: 0.1, Test: 0.1, Seed: 1}

// Split divides the loaded features into train, validation and test rows:
// the dataset's own split folders when it has them (validation rows drawn
// from train, stratified, when there is no val folder), else a stratified
// draw with the given fractions. A held-out split that would leave a class
// without a row in it, or with fewer than 2 training rows, is not made;
// SplitInfo.Skipped says why (head.PlanSplit). The result records how, for
// the head.
func Split(f *pipeline.Features, opt SplitOptions) (*head.SplitInfo, error) {
	return splitRows(splitInput{labels: f.Labels, classes: f.Classes, split: func(i int) string { return f.Splits[i] },
		n: f.N, view: f.Run.View, fingerprint: Fingerprint(f), dataset: f.Run.Dataset}, opt)
}

// SplitIndex is Split for a dataset's features that were indexed rather
// than loaded: it needs only the rows' labels and split folders, so a
// split of 100M rows is drawn (and redrawn by Eval) without their
// features.
func SplitIndex(x *pipeline.FeatureIndex, opt SplitOptions) (*head.SplitInfo, error) {
	return splitRows(splitInput{labels: x.Labels, classes: x.Classes, split: func(i int) string { return pipeline.SplitName(x.Splits[i]) },
		n: x.N, view: x.Run.View, fingerprint: x.Fingerprint, dataset: x.Run.Dataset}, opt)
}

// splitInput is what a split is drawn from: the rows' labels and split
// folders, and what identifies the rows.
type splitInput struct {
	labels                     []int32
	classes                    []string
	split                      func(i int) string
	n                          int
	view, fingerprint, dataset string
}

func splitRows(f splitInput, opt SplitOptions) (*head.SplitInfo, error) {
	info := &head.SplitInfo{Seed: opt.Seed, Val: opt.Val, Test: opt.Test, View: f.view, Fingerprint: f.fingerprint, Rows: f.n, Dataset: f.dataset}
	bySplit := map[string][]int{}
	for i := 0; i < f.n; i++ {
		s := f.split(i)
		bySplit[s] = append(bySplit[s], i)
	}
	var val, test []int
	if len(bySplit["train"]) == 0 && len(bySplit["val"]) == 0 && len(bySplit["test"]) == 0 {
		info.Source = "stratified"
		plan, err := head.PlanSplit(f.labels, f.classes, head.SplitOptions{ValFrac: opt.Val, TestFrac: opt.Test, Seed: opt.Seed})
		if err != nil {
			return nil, err
		}
		val, test = plan.Val, plan.Test
		info.Skipped = skipped(plan)
	} else {
		info.Source = "folders"
		test = bySplit["test"]
		val = bySplit["val"]
		pool := append(append([]int(nil), bySplit["train"]...), bySplit[""]...)
		if len(val) == 0 && opt.Val > 0 && len(pool) > 0 {
			labels := make([]int32, len(pool))
			for i, r := range pool {
				labels[i] = f.labels[r]
			}
			plan, err := head.PlanSplit(labels, f.classes, head.SplitOptions{ValFrac: opt.Val, Seed: opt.Seed})
			if err != nil {
				return nil, err
			}
			for _, i := range plan.Val {
				val = append(val, pool[i])
			}
			info.Skipped = skipped(plan)
		}
	}
	info.ValIndex = sortedCopy(val)
	info.TestIndex = sortedCopy(test)
	return info, nil
}

// Rows returns the train, validation and test rows a recorded split names,
// in ascending order.
func Rows(s *head.SplitInfo) (train, val, test []int) {
	held := make([]bool, s.Rows)
	for _, r := range s.ValIndex {
		held[r] = true
	}
	for _, r := range s.TestIndex {
		held[r] = true
	}
	for r, h := range held {
		if !h {
			train = append(train, r)
		}
	}
	return train, s.ValIndex, s.TestIndex
}

// checkSplit reports whether a recorded split still applies to f.
func checkSplit(s *head.SplitInfo, f *pipeline.Features) error {
	if s.Rows != f.N || s.Fingerprint != Fingerprint(f) {
		return fmt.Errorf("the dataset view %s changed since the head was trained (%d images then, %d now), so its recorded test split no longer applies: evaluate a labelled folder (`headtune eval DATASET`) or train again", s.View, s.Rows, f.N)
	}
	for _, idx := range [][]int{s.ValIndex, s.TestIndex} {
		for _, r := range idx {
			if r < 0 || r >= f.N {
				return fmt.Errorf("recorded split names row %d of a %d-row view", r, f.N)
			}
		}
	}
	return nil
}

// Fingerprint is the hex SHA-256 of a view's entries (path, label, split,
// image hash, in order): equal fingerprints mean row i is the same image
// with the same label in both.
func Fingerprint(f *pipeline.Features) string {
	h := sha256.New()
	for _, e := range f.Entries {
		fmt.Fprintf(h, "%q %q %q %x\n", e.Path, e.Label, e.Split, e.Key)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedCopy(v []int) []int {
	out := append([]int{}, v...)
	sort.Ints(out)
	return out
}

// skipped lists the reasons a split plan gives for the splits it did not make.
func skipped(p head.SplitPlan) []string {
	var s []string
	for _, why := range []string{p.TestSkipped, p.ValSkipped} {
		if why != "" {
			s = append(s, why)
		}
	}
	return s
}
