package imaging

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestPresetsValidate(t *testing.T) {
	for _, name := range PresetNames {
		s, err := Preset(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// Every preset maps 0..255 somewhere finite and monotonic.
		for c := 0; c < 3; c++ {
			lo := (0*s.Scale - s.Mean[c]) / s.Std[c]
			hi := (255*s.Scale - s.Mean[c]) / s.Std[c]
			if !(hi > lo) {
				t.Errorf("%s channel %d: 0 -> %v, 255 -> %v", name, c, lo, hi)
			}
		}
	}
	if _, err := Preset("nope"); err == nil || !strings.Contains(err.Error(), "imagenet") {
		t.Errorf("unknown preset error %v should list the known names", err)
	}
}

func TestPresetRanges(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float32 // value of pixel 0 and 255 in the first output channel
	}{
		{"unit", 0, 1},
		{"symmetric", -1, 1},
		{"raw", 0, 255},
		{"imagenet", -0.485 / 0.229, (1 - 0.485) / 0.229},
		{"caffe", -103.939, 255 - 103.939}, // first channel is B
	}
	for _, tc := range tests {
		s, _ := Preset(tc.name)
		lo := (0*s.Scale - s.Mean[0]) / s.Std[0]
		hi := (255*s.Scale - s.Mean[0]) / s.Std[0]
		if math.Abs(float64(lo-tc.lo)) > 1e-4 || math.Abs(float64(hi-tc.hi)) > 1e-4 {
			t.Errorf("%s: range %v..%v, want %v..%v", tc.name, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestWithInput(t *testing.T) {
	s, _ := Preset("imagenet")
	tests := []struct {
		w, h, c     int
		layout      string
		wantShorter int
	}{
		{224, 224, 3, LayoutNCHW, 256},
		{299, 299, 3, LayoutNHWC, 342}, // 299*256/224 = 341.7
		{112, 112, 1, LayoutNCHW, 128},
		{320, 240, 3, LayoutNCHW, 366},
	}
	for _, tc := range tests {
		got := s.WithInput(tc.w, tc.h, tc.c, tc.layout)
		if got.Width != tc.w || got.Height != tc.h || got.Channels != tc.c || got.Layout != tc.layout || got.ResizeShorter != tc.wantShorter {
			t.Errorf("WithInput(%d,%d,%d,%s) = %+v, want resize_shorter %d", tc.w, tc.h, tc.c, tc.layout, got, tc.wantShorter)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("WithInput(%d,%d): %v", tc.w, tc.h, err)
		}
		if got.TensorLen() != tc.w*tc.h*tc.c {
			t.Errorf("TensorLen %d", got.TensorLen())
		}
	}
	u, _ := Preset("unit")
	if got := u.WithInput(299, 299, 3, LayoutNHWC); got.ResizeShorter != 0 {
		t.Errorf("unit preset keeps resize_shorter 0, got %d", got.ResizeShorter)
	}
}

func TestValidateRejects(t *testing.T) {
	base, _ := Preset("imagenet")
	tests := []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"zero width", func(s *Spec) { s.Width = 0 }, "input size"},
		{"huge", func(s *Spec) { s.Height = 100000 }, "input size"},
		{"shorter below crop", func(s *Spec) { s.ResizeShorter = 200 }, "resize_shorter 200"},
		{"shorter with squash", func(s *Spec) { s.Resize = ResizeSquash }, "only meaningful"},
		{"resize mode", func(s *Spec) { s.Resize = "stretch" }, "unknown resize mode"},
		{"interp", func(s *Spec) { s.Interpolation = "lanczos" }, "unknown interpolation"},
		{"channels", func(s *Spec) { s.Channels = 4 }, "channels 4"},
		{"order", func(s *Spec) { s.ChannelOrder = "rgb" }, "channel order"},
		{"layout", func(s *Spec) { s.Layout = "CHW" }, "layout"},
		{"scale", func(s *Spec) { s.Scale = 0 }, "scale"},
		{"std", func(s *Spec) { s.Std[1] = 0 }, "std[1]"},
		{"nan mean", func(s *Spec) { s.Mean[2] = float32(math.NaN()) }, "mean[2]"},
		{"inf std", func(s *Spec) { s.Std[0] = float32(math.Inf(1)) }, "std[0]"},
	}
	for _, tc := range tests {
		s := base
		tc.mod(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestCanonicalHashParse(t *testing.T) {
	seen := map[string]string{}
	for _, name := range PresetNames {
		s, _ := Preset(name)
		c := s.Canonical()
		if string(c) != string(s.Canonical()) {
			t.Fatalf("%s: Canonical not stable", name)
		}
		h := s.Hash()
		if len(h) != 64 {
			t.Errorf("hash %q", h)
		}
		if prev, ok := seen[h]; ok {
			t.Errorf("presets %s and %s share a hash", prev, name)
		}
		seen[h] = name
		back, err := ParseSpec(c)
		if err != nil {
			t.Fatalf("%s: ParseSpec(Canonical): %v", name, err)
		}
		if back != s || back.Hash() != h {
			t.Errorf("%s: round trip changed the spec: %+v vs %+v", name, back, s)
		}
	}
	// Every field matters to the hash.
	base, _ := Preset("imagenet")
	mods := []func(*Spec){
		func(s *Spec) { s.Width++ }, func(s *Spec) { s.Height++ },
		func(s *Spec) { s.Resize = ResizeSquash; s.ResizeShorter = 0 }, func(s *Spec) { s.ResizeShorter++ },
		func(s *Spec) { s.Interpolation = InterpBicubic }, func(s *Spec) { s.Channels = 1 },
		func(s *Spec) { s.ChannelOrder = OrderBGR }, func(s *Spec) { s.Layout = LayoutNHWC },
		func(s *Spec) { s.Scale = 1 }, func(s *Spec) { s.Mean[2] = 0.5 }, func(s *Spec) { s.Std[0] = 0.3 },
		func(s *Spec) { s.Background[1] = 7 }, func(s *Spec) { s.FastJPEG = true },
	}
	for i, m := range mods {
		s := base
		m(&s)
		if s.Hash() == base.Hash() {
			t.Errorf("modification %d does not change the hash", i)
		}
	}
	bad := []struct{ in, want string }{
		{`{"width":224}`, "input size"},
		{`{"width":224,"bogus":1}`, "unknown field"},
		{`not json`, "invalid character"},
		{string(base.Canonical()) + `{}`, "trailing data"},
	}
	for _, tc := range bad {
		if _, err := ParseSpec([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSpec(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestGeometryTorchvision checks crop geometry against torchvision 0.14's
// formulas, written out independently here: Resize(s) sets the short side
// to s and the long to int(s*long/short); CenterCrop uses
// int(round((size-crop)/2.0)) with Python's round-half-to-even.
func TestGeometryTorchvision(t *testing.T) {
	pyRound := func(x float64) int { // Python 3 round(): half to even
		f := math.Floor(x)
		switch d := x - f; {
		case d < 0.5:
			return int(f)
		case d > 0.5:
			return int(f) + 1
		}
		if int(f)%2 == 0 {
			return int(f)
		}
		return int(f) + 1
	}
	tests := []struct{ w, h, shorter, crop int }{
		{640, 480, 256, 224}, {480, 640, 256, 224}, {500, 375, 256, 224}, {333, 500, 256, 224},
		{257, 193, 65, 56}, {224, 224, 256, 224}, {1000, 3, 256, 224}, {3, 1000, 256, 224},
		{299, 299, 342, 299}, {801, 600, 257, 224},
	}
	for _, tc := range tests {
		s, _ := Preset("imagenet")
		s = s.WithInput(tc.crop, tc.crop, 3, LayoutNCHW)
		s.ResizeShorter = tc.shorter
		g := s.Geometry(tc.w, tc.h)
		short, long := min(tc.w, tc.h), max(tc.w, tc.h)
		nl := int(float64(tc.shorter) * float64(long) / float64(short))
		ww, wh := tc.shorter, nl
		if tc.w > tc.h {
			ww, wh = nl, tc.shorter
		}
		want := Geometry{FullW: ww, FullH: wh, X0: pyRound(float64(ww-tc.crop) / 2), Y0: pyRound(float64(wh-tc.crop) / 2), W: tc.crop, H: tc.crop}
		if g != want {
			t.Errorf("%dx%d resize %d crop %d: %+v, want %+v", tc.w, tc.h, tc.shorter, tc.crop, g, want)
		}
	}
}

func TestGeometryModes(t *testing.T) {
	s, _ := Preset("unit")
	s = s.WithInput(100, 50, 3, LayoutNCHW)
	tests := []struct {
		mode ResizeMode
		w, h int
		want Geometry
	}{
		{ResizeSquash, 640, 480, Geometry{FullW: 100, FullH: 50, W: 100, H: 50}},
		{ResizeLetterbox, 640, 480, Geometry{FullW: 67, FullH: 50, W: 67, H: 50, PadX: 16}},
		{ResizeLetterbox, 400, 100, Geometry{FullW: 100, FullH: 25, W: 100, H: 25, PadY: 12}},
		// cover: 640x480 to 100x50 scales by max(100/640, 50/480)
		{ResizeCrop, 640, 480, Geometry{FullW: 100, FullH: 75, Y0: 12, W: 100, H: 50}},
		{ResizeCrop, 100, 200, Geometry{FullW: 100, FullH: 200, Y0: 75, W: 100, H: 50}},
		{ResizeCrop, 400, 100, Geometry{FullW: 200, FullH: 50, X0: 50, W: 100, H: 50}},
	}
	for _, tc := range tests {
		s.Resize = tc.mode
		if g := s.Geometry(tc.w, tc.h); g != tc.want {
			t.Errorf("%s %dx%d: %+v, want %+v", tc.mode, tc.w, tc.h, g, tc.want)
		}
	}
}

func TestInputShape(t *testing.T) {
	for _, tc := range []struct {
		layout string
		want   []int64
	}{
		{LayoutNCHW, []int64{3, 20, 30}},
		{LayoutNHWC, []int64{20, 30, 3}},
	} {
		s := Spec{Layout: tc.layout, Channels: 3, Height: 20, Width: 30}
		if got := s.InputShape(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: InputShape() = %v, want %v", tc.layout, got, tc.want)
		}
	}
}
