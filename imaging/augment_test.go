package imaging

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestAugmentDeterministicAndSane(t *testing.T) {
	src := NewRGB(40, 30)
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			i := (y*40 + x) * 3
			src.Pix[i], src.Pix[i+1], src.Pix[i+2] = uint8(6*x), uint8(8*y), 128
		}
	}
	orig := append([]uint8(nil), src.Pix...)
	a := Augment(src, DefaultAugment, rand.New(rand.NewPCG(1, 2)))
	b := Augment(src, DefaultAugment, rand.New(rand.NewPCG(1, 2)))
	c := Augment(src, DefaultAugment, rand.New(rand.NewPCG(1, 3)))
	if !bytes.Equal(src.Pix, orig) {
		t.Fatal("Augment modified its source")
	}
	if a.W != 40 || a.H != 30 || !bytes.Equal(a.Pix, b.Pix) || bytes.Equal(a.Pix, c.Pix) {
		t.Fatal("views are not a deterministic function of the rng state")
	}
	// identity recipe: no flip, full crop, no rotation, no jitter
	id := Augment(src, AugmentSpec{MinScale: 1, MaxAspect: 1}, rand.New(rand.NewPCG(5, 5)))
	if !bytes.Equal(id.Pix, src.Pix) {
		t.Error("the identity recipe changed pixels")
	}
	// flip only: the red ramp runs the other way
	fl := Augment(src, AugmentSpec{FlipProb: 1, MinScale: 1, MaxAspect: 1}, rand.New(rand.NewPCG(5, 5)))
	for x := 0; x < 40; x++ {
		if fl.Pix[x*3] != src.Pix[(39-x)*3] {
			t.Fatalf("flip: pixel %d red %d, want %d", x, fl.Pix[x*3], src.Pix[(39-x)*3])
		}
	}
}
