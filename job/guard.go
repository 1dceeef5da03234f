package job

import (
	"fmt"
	"slices"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/pipeline"
	"github.com/headtune/headtune/predictions"
)

// headGuard scores a head's rows from their features: probabilities damped
// outside the training domain (head.Model.PredictGuarded, such rows answer
// predictions.Unknown) and, with a coverage, the conformal prediction set.
type headGuard struct {
	m          *head.Model
	topK       int
	q          float64 // set threshold on 1 - p; < 0 without coverage
	embeddings bool
	probs      []float32
	order      []int
	set        []int
	s          head.Scratch
}

func newHeadGuard(m *head.Model, opt PredictOptions) (*headGuard, error) {
	g := &headGuard{m: m, topK: max(1, min(opt.TopK, m.NumClasses())), q: -1, embeddings: opt.Embeddings,
		probs: make([]float32, m.NumClasses())}
	if c := opt.Coverage; c != 0 {
		if !(c > 0 && c < 1) {
			return nil, fmt.Errorf("--coverage %g: want a probability between 0 and 1, such as 0.9", c)
		}
		if m.Conformal == nil {
			return nil, fmt.Errorf("--coverage: the head has no conformal scores (trained before headtune recorded them, or without held-out images: see what `headtune train` printed about calibration); train it again")
		}
		q, all, err := m.Conformal.Threshold(c)
		if err != nil {
			return nil, err
		}
		if all {
			return nil, fmt.Errorf("--coverage %g needs at least %d held-out scores, the head has %d: every set would hold every class; ask for a lower coverage or train with more images", c, head.MinRows(c), len(m.Conformal.Scores))
		}
		g.q = q
	}
	return g, nil
}

// row rescores one prediction from its features.
func (g *headGuard) row(pr pipeline.Prediction, threshold float32) predictions.Row {
	m := g.m
	ratio, err := m.PredictGuarded(pr.Features, g.probs, &g.s)
	if err != nil {
		return predictions.Row{Path: pr.Path, Error: err.Error()}
	}
	k := m.NumClasses()
	g.order = g.order[:0]
	for j := 0; j < k; j++ {
		g.order = append(g.order, j)
	}
	p := g.probs
	slices.SortStableFunc(g.order, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return 0
	})
	r := predictions.Row{Path: pr.Path, Class: m.Classes[g.order[0]], Probability: p[g.order[0]]}
	for _, j := range g.order[:g.topK] {
		r.TopK = append(r.TopK, predictions.Scored{Class: m.Classes[j], Probability: p[j]})
	}
	if threshold > 0 && r.Probability < threshold {
		r.Class = predictions.Unknown
	}
	if ratio > 1 {
		r.Class, r.Outside = predictions.Unknown, ratio
	}
	if g.q >= 0 {
		q := g.q
		if ratio > 1 {
			q = 1 // outside the domain the scores say nothing: every class
		}
		g.set = head.Set(g.set[:0], p, q)
		r.Set = make([]string, len(g.set))
		for i, j := range g.set {
			r.Set[i] = m.Classes[j]
		}
	}
	if g.embeddings {
		r.Embedding = pr.Features
	}
	return r
}
