package imaging

import (
	"math"
	"math/rand/v2"
)

// AugmentSpec is the family of random views Augment draws from. The zero
// value is not useful; start from DefaultAugment.
type AugmentSpec struct {
	FlipProb   float64 `json:"flip_prob"`   // probability of a horizontal flip
	MinScale   float64 `json:"min_scale"`   // random resized crop: smallest share of the area kept, (0, 1]
	MaxAspect  float64 `json:"max_aspect"`  // crop aspect ratio, relative to the image's, in [1/MaxAspect, MaxAspect], log-uniform
	MaxDegrees float64 `json:"max_degrees"` // rotation uniform in ±MaxDegrees
	Jitter     float64 `json:"jitter"`      // brightness, contrast and saturation factors uniform in [1-Jitter, 1+Jitter]
}

// DefaultAugment is torchvision's usual light recipe for fine-tuning on
// small datasets: flip half the time, keep 60-100% of the area at aspect
// 3:4 to 4:3, rotate up to 10 degrees, jitter colours by 20%.
var DefaultAugment = AugmentSpec{FlipProb: 0.5, MinScale: 0.6, MaxAspect: 4.0 / 3, MaxDegrees: 10, Jitter: 0.2}

// Augment returns one random view of src, of the same size, drawn with
// rng: a random resized crop rotated about its centre (one bilinear
// resampling pass, edges clamped), an optional horizontal flip, then
// brightness, contrast and saturation jitter. src is not modified. The
// same rng state gives the same bytes.
func Augment(src *RGB, spec AugmentSpec, rng *rand.Rand) *RGB {
	W, H := src.W, src.H
	scale := spec.MinScale + (1-spec.MinScale)*rng.Float64()
	la := math.Log(math.Max(1, spec.MaxAspect))
	aspect := math.Exp((2*rng.Float64() - 1) * la)
	// aspect is relative to the image's own, so scale 1, aspect 1 is the
	// whole image
	cw := math.Min(float64(W), float64(W)*math.Sqrt(scale*aspect))
	ch := math.Min(float64(H), float64(H)*math.Sqrt(scale/aspect))
	x0 := rng.Float64() * (float64(W) - cw)
	y0 := rng.Float64() * (float64(H) - ch)
	theta := (2*rng.Float64() - 1) * spec.MaxDegrees * math.Pi / 180
	flip := rng.Float64() < spec.FlipProb
	jit := func() float64 { return 1 + (2*rng.Float64()-1)*spec.Jitter }
	bright, contrast, sat := jit(), jit(), jit()

	dst := NewRGB(W, H)
	sin, cos := math.Sin(theta), math.Cos(theta)
	cx, cy := x0+cw/2, y0+ch/2
	sx, sy := cw/float64(W), ch/float64(H)
	at := func(x, y, c int) float64 {
		x = min(max(x, 0), W-1)
		y = min(max(y, 0), H-1)
		return float64(src.Pix[(y*W+x)*3+c])
	}
	var sum float64
	out := make([]float64, W*H*3)
	for v := 0; v < H; v++ {
		for u := 0; u < W; u++ {
			uu := float64(u) + 0.5
			if flip {
				uu = float64(W) - uu
			}
			// position in the crop, relative to its centre, then rotated
			dx, dy := (uu-float64(W)/2)*sx, (float64(v)+0.5-float64(H)/2)*sy
			px := cx + cos*dx - sin*dy - 0.5
			py := cy + sin*dx + cos*dy - 0.5
			ix, iy := int(math.Floor(px)), int(math.Floor(py))
			fx, fy := px-float64(ix), py-float64(iy)
			for c := 0; c < 3; c++ {
				val := (at(ix, iy, c)*(1-fx)+at(ix+1, iy, c)*fx)*(1-fy) + (at(ix, iy+1, c)*(1-fx)+at(ix+1, iy+1, c)*fx)*fy
				val *= bright
				out[(v*W+u)*3+c] = val
				sum += val
			}
		}
	}
	mean := sum / float64(len(out))
	for i := 0; i < W*H; i++ {
		p := out[i*3 : i*3+3]
		grey := 0.299*p[0] + 0.587*p[1] + 0.114*p[2]
		for c := 0; c < 3; c++ {
			x := grey + (p[c]-grey)*sat
			x = mean + (x-mean)*contrast
			dst.Pix[i*3+c] = uint8(math.Round(math.Min(255, math.Max(0, x))))
		}
	}
	return dst
}
