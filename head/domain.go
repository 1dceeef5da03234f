package head

import (
	"fmt"
	"math"
	"slices"
)

// DomainFactor is how many times the largest training distance an input
// may lie from the training data before it counts as outside the domain.
// With a head trained on 5400 Fashion-MNIST images, none of 2000 test
// images lay beyond twice the largest training distance, and the seven
// photos of Debian's darknet package lay 4.5 to 25 times beyond that limit
// (README, small datasets).
const DomainFactor = 2

// Domain describes how far from the training data a head's inputs may
// lie. Distance is the root mean square of the standardised features,
// sqrt(Σ_j ((x_j - Mean_j)/Std_j)² / D): about 1 for a typical training
// row. It needs the model's standardisation (Mean, Std).
//
// Few training rows estimate each feature's spread badly: a ReLU feature
// that fired in one of 21 training faces gets a tiny Std, and every new
// face in which it fires lands "far away". Distance therefore adds Shrink
// to every feature's variance: the median variance weighted as 2 prior
// pseudo-rows against the n training rows, 2/(n+2). It matters for a few
// dozen rows and fades for thousands, where a small variance is real (a
// grey dataset's colour features) and is what tells photos apart. Heads
// written before Shrink existed have 0 and keep their distances.
type Domain struct {
	MaxTrain float64 `json:"max_train"`        // largest Distance of a training row
	Limit    float64 `json:"limit"`            // DomainFactor × MaxTrain: beyond it an input is outside
	Shrink   float64 `json:"shrink,omitempty"` // variance added to every feature's Std² in Distance
}

// Distance is the RMS standardised distance of x [Dim()] from the training
// mean, with the domain's Shrink added to each feature's variance; NaN
// when the model has no standardisation.
func (m *Model) Distance(x []float32) float64 {
	if m.Mean == nil || len(x) != len(m.Mean) {
		return math.NaN()
	}
	shrink := 0.0
	if m.Domain != nil {
		shrink = m.Domain.Shrink
	}
	s := 0.0
	for j, v := range x {
		e, sd := float64(v)-float64(m.Mean[j]), float64(m.Std[j])
		s += e * e / (sd*sd + shrink)
	}
	return math.Sqrt(s / float64(len(x)))
}

// domainShrink is the variance added to every feature's in Distance for a
// domain fitted on rows rows with standard deviations std.
func domainShrink(std []float32, rows int) float64 {
	vars := make([]float64, len(std))
	for j, sd := range std {
		vars[j] = float64(sd) * float64(sd)
	}
	slices.Sort(vars)
	median := vars[len(vars)/2]
	const priorRows = 2
	return priorRows / float64(rows+priorRows) * median
}

// setDomain records the domain of the training rows d.
func (m *Model) setDomain(d Data) {
	if m.Mean == nil || d.Rows() == 0 {
		m.Domain = nil
		return
	}
	m.Domain = &Domain{Shrink: domainShrink(m.Std, d.Rows())}
	mx := 0.0
	for i := 0; i < d.Rows(); i++ {
		mx = math.Max(mx, m.Distance(d.Row(i)))
	}
	m.Domain.MaxTrain, m.Domain.Limit = mx, DomainFactor*mx
}

// PredictGuarded is Predict for inputs that may not look like the training
// data. It returns ratio = Distance(x)/Domain.Limit (0 when the head has no
// domain). Within the domain (ratio ≤ 1) probs are Predict's. Beyond it a
// head extrapolates: a linear head's logits grow in proportion to the
// distance, and a photo of an unrelated scene 30 times farther out than any
// training image gets probability 1.000 for some class. There the
// temperature is multiplied by ratio⁴, which undoes the linear growth and
// lets confidence fall towards uniform the farther the input lies (ratio²
// left darknet's photos at 0.72-1.00 with 36 training images of 4
// classes, ratio⁴ at 0.32-0.69: scripts/domainguard.sh). It is a
// heuristic, not a calibrated probability, and the caller should
// report such rows as outside the training data. Exports do not apply it
// (they compute softmax(logits/Temperature) in ONNX).
func (m *Model) PredictGuarded(x, probs []float32, s *Scratch) (ratio float64, err error) {
	if err := m.Logits(x, probs, s); err != nil {
		return 0, fmt.Errorf("predict: %w", err)
	}
	t := m.Temperature
	if m.Domain != nil && m.Domain.Limit > 0 {
		ratio = m.Distance(x) / m.Domain.Limit
		if ratio > 1 {
			t *= ratio * ratio * ratio * ratio
		}
	}
	softmaxInPlace(probs, 1/t)
	return ratio, nil
}
