package faces

import (
	"math"
	"testing"
)

// TestAnchors: 896 anchors, the 16x16 grid's two per cell then the 8x8
// grid's six, at cell centres.
func TestAnchors(t *testing.T) {
	if len(anchors) != 896 {
		t.Fatalf("%d anchors", len(anchors))
	}
	tests := []struct {
		i    int
		x, y float32
	}{
		{0, 0.5 / 16, 0.5 / 16}, {1, 0.5 / 16, 0.5 / 16}, {2, 1.5 / 16, 0.5 / 16},
		{32, 0.5 / 16, 1.5 / 16}, {511, 15.5 / 16, 15.5 / 16},
		{512, 0.5 / 8, 0.5 / 8}, {517, 0.5 / 8, 0.5 / 8}, {518, 1.5 / 8, 0.5 / 8}, {895, 7.5 / 8, 7.5 / 8},
	}
	for _, tc := range tests {
		if a := anchors[tc.i]; a.x != tc.x || a.y != tc.y {
			t.Errorf("anchor %d at (%v, %v), want (%v, %v)", tc.i, a.x, a.y, tc.x, tc.y)
		}
	}
}

// TestDecode: box = anchor + raw/256, sigmoid scores, threshold.
func TestDecode(t *testing.T) {
	scores := []float32{-3, 2}
	regs := make([]float32, 2*blazeCoords)
	r := regs[blazeCoords:]
	r[0], r[1], r[2], r[3] = 25.6, -12.8, 51.2, 25.6 // +0.1, -0.05; 0.2 x 0.1
	r[4], r[5] = 2.56, 2.56
	got := decode(nil, scores, regs, 512, 0.5)
	if len(got) != 1 {
		t.Fatalf("%d candidates, want 1 (sigmoid(-3) = 0.047 is below 0.5)", len(got))
	}
	c := got[0]
	a := anchors[513]
	want := []float32{a.x + 0.1 - 0.1, a.y - 0.05 - 0.05, a.x + 0.1 + 0.1, a.y - 0.05 + 0.05, a.x + 0.01, a.y + 0.01}
	for i, w := range want {
		if math.Abs(float64(c.v[i]-w)) > 1e-6 {
			t.Errorf("value %d = %v, want %v", i, c.v[i], w)
		}
	}
	if math.Abs(float64(c.score)-1/(1+math.Exp(-2))) > 1e-6 {
		t.Errorf("score %v", c.score)
	}
	if s := sigmoid(1e9); s != 1 || sigmoid(float32(math.Inf(-1))) > 1e-40 {
		t.Errorf("sigmoid clipping: %v", s)
	}
}

func box(score, x0, y0, x1, y1 float32) candidate {
	c := candidate{score: score}
	c.v[0], c.v[1], c.v[2], c.v[3] = x0, y0, x1, y1
	c.v[4], c.v[5] = x0, y0 // a keypoint at the corner
	return c
}

// TestSuppress: overlapping detections merge (blend: score-weighted mean,
// best score; nms: the best one), separate ones stay.
func TestSuppress(t *testing.T) {
	tests := []struct {
		name  string
		in    []candidate
		blend bool
		want  []candidate
	}{
		{"separate", []candidate{box(0.9, 0, 0, 1, 1), box(0.8, 2, 2, 3, 3)}, true,
			[]candidate{box(0.9, 0, 0, 1, 1), box(0.8, 2, 2, 3, 3)}},
		{"blend two", []candidate{box(0.6, 0.2, 0, 1.2, 1), box(0.9, 0, 0, 1, 1)}, true,
			[]candidate{box(0.9, 0.08, 0, 1.08, 1)}},
		{"nms two", []candidate{box(0.6, 0.2, 0, 1.2, 1), box(0.9, 0, 0, 1, 1)}, false,
			[]candidate{box(0.9, 0, 0, 1, 1)}},
		// IoU 0.25 < 0.3: both kept.
		{"low overlap", []candidate{box(0.9, 0, 0, 1, 1), box(0.8, 0.6, 0, 1.6, 1)}, true,
			[]candidate{box(0.9, 0, 0, 1, 1), box(0.8, 0.6, 0, 1.6, 1)}},
		{"none", nil, true, nil},
	}
	for _, tc := range tests {
		got := suppress(append([]candidate(nil), tc.in...), tc.blend)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d results, want %d", tc.name, len(got), len(tc.want))
			continue
		}
		for i := range got {
			if got[i].score != tc.want[i].score {
				t.Errorf("%s: result %d score %v, want %v", tc.name, i, got[i].score, tc.want[i].score)
			}
			for k := range got[i].v {
				if math.Abs(float64(got[i].v[k]-tc.want[i].v[k])) > 1e-6 {
					t.Errorf("%s: result %d value %d = %v, want %v", tc.name, i, k, got[i].v[k], tc.want[i].v[k])
				}
			}
		}
	}
}
