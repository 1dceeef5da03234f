package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Range is a calibrated activation range in float units. Min <= 0 <= Max
// after Stats.Ranges (zero must be exactly representable).
type Range struct {
	Min float32 `json:"min"`
	Max float32 `json:"max"`
}

// Calibration methods for Stats.Ranges.
const (
	// MinMax uses the smallest and largest value seen.
	MinMax = "minmax"
	// Percentile clips each tensor to the given percentile of its values
	// (both tails), trading rare outliers for finer steps.
	Percentile = "percentile"
)

// DefaultPercentile is the percentile Percentile uses when given 0.
const DefaultPercentile = 99.99

// DefaultReservoir is how many values per tensor Stats keeps for
// percentiles (256 KiB of float32 each).
const DefaultReservoir = 1 << 16

// Stats accumulates what calibration saw of each plan tensor: the exact
// minimum and maximum, and a random sample of values (reservoir values,
// spread evenly over the expected samples) from which percentiles are
// read. The sample positions come from a PCG stream seeded with Seed, so
// the same images in the same order give the same ranges. Not safe for
// concurrent use.
type Stats struct {
	tensors []string
	sizes   []int
	min     []float32
	max     []float32
	kept    [][]float32
	perImg  int // values sampled per tensor per image
	rng     *rand.Rand
	n       int // images seen
}

// NewStats prepares to collect the plan's tensors over about samples
// images with the given seed; reservoir (DefaultReservoir when 0) bounds
// the values kept per tensor.
func NewStats(p *Plan, samples int, seed uint64, reservoir int) *Stats {
	if reservoir <= 0 {
		reservoir = DefaultReservoir
	}
	if samples < 1 {
		samples = 1
	}
	s := &Stats{tensors: p.Tensors, sizes: p.Sizes, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		perImg: max(1, reservoir/samples)}
	s.min = make([]float32, len(p.Tensors))
	s.max = make([]float32, len(p.Tensors))
	s.kept = make([][]float32, len(p.Tensors))
	for i := range s.min {
		s.min[i] = float32(math.Inf(1))
		s.max[i] = float32(math.Inf(-1))
	}
	return s
}

// Images is the number of images added so far.
func (s *Stats) Images() int { return s.n }

// Add takes the calibration model's outputs for a batch of n images:
// outs[k] holds n*Sizes[k] values of tensor k, batch-major.
func (s *Stats) Add(outs [][]float32, n int) error {
	if len(outs) != len(s.tensors) {
		return fmt.Errorf("calibration: %d outputs for %d tensors", len(outs), len(s.tensors))
	}
	for k, o := range outs {
		if len(o) < n*s.sizes[k] {
			return fmt.Errorf("calibration: tensor %s has %d values for %d images of %d", s.tensors[k], len(o), n, s.sizes[k])
		}
	}
	for img := 0; img < n; img++ {
		for k, o := range outs {
			v := o[img*s.sizes[k] : (img+1)*s.sizes[k]]
			lo, hi := s.min[k], s.max[k]
			for _, x := range v {
				if x < lo {
					lo = x
				}
				if x > hi {
					hi = x
				}
			}
			s.min[k], s.max[k] = lo, hi
			for j := 0; j < s.perImg; j++ {
				s.kept[k] = append(s.kept[k], v[s.rng.IntN(len(v))])
			}
		}
		s.n++
	}
	return nil
}

// Ranges returns each tensor's range by method (MinMax or Percentile, pct
// in (50, 100], DefaultPercentile when 0), widened to include zero. NaN or
// infinite values seen make it fail, naming the tensor.
func (s *Stats) Ranges(method string, pct float64) (map[string]Range, error) {
	if s.n == 0 {
		return nil, fmt.Errorf("calibration saw no images")
	}
	if pct == 0 {
		pct = DefaultPercentile
	}
	if method == Percentile && (pct <= 50 || pct > 100) {
		return nil, fmt.Errorf("percentile %g is outside (50, 100]", pct)
	}
	out := make(map[string]Range, len(s.tensors))
	for k, t := range s.tensors {
		lo, hi := s.min[k], s.max[k]
		if math.IsNaN(float64(lo)) || math.IsInf(float64(lo), 0) || math.IsInf(float64(hi), 0) {
			return nil, fmt.Errorf("calibration: tensor %s has non-finite values", t)
		}
		switch method {
		case MinMax:
		case Percentile:
			v := slices.Clone(s.kept[k])
			slices.Sort(v)
			if len(v) > 0 && math.IsNaN(float64(v[len(v)-1])) {
				return nil, fmt.Errorf("calibration: tensor %s has NaN values", t)
			}
			if len(v) > 0 {
				q := func(p float64) float32 {
					i := int(math.Round(p / 100 * float64(len(v)-1)))
					return v[min(max(i, 0), len(v)-1)]
				}
				lo, hi = max(lo, q(100-pct)), min(hi, q(pct))
			}
		default:
			return nil, fmt.Errorf("unknown calibration method %q (want %s or %s)", method, MinMax, Percentile)
		}
		out[t] = Range{Min: min(lo, 0), Max: max(hi, 0)}
	}
	return out, nil
}
