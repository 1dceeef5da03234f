package faces

import (
	"math"
	"sort"
)

// BlazeFace "back" (full-range, 256x256) model geometry, as MediaPipe's
// face_detection_back graph configures its SSD anchors: strides 16, 32, 32,
// 32 with fixed-size anchors and one interpolated aspect ratio, which gives
// 2 anchors per cell on the 16x16 grid and 6 per cell on the 8x8 grid.
const (
	blazeInput   = 256 // input side in pixels
	blazeCoords  = 16  // regressor values per anchor: box (4) + 6 keypoints (12)
	blazeAnchors = 512 + 384
	// NumKeypoints is the number of keypoints BlazeFace gives per face, in
	// Keypoint order.
	NumKeypoints = 6
)

// Keypoint indices in Face.Keypoints. Left and right are the subject's: the
// right eye is on the viewer's left in an unmirrored photo.
const (
	RightEye = iota
	LeftEye
	NoseTip
	Mouth
	RightEar
	LeftEar
)

// KeypointNames are the keypoints' names in index order.
var KeypointNames = [NumKeypoints]string{"right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear"}

// anchor is an anchor centre in input-normalised coordinates (0..1).
type anchor struct{ x, y float32 }

// anchors lists the 896 anchors in the order of the model's concatenated
// outputs: the 16x16 grid (row-major, 2 per cell), then the 8x8 grid (6 per
// cell).
var anchors = func() []anchor {
	a := make([]anchor, 0, blazeAnchors)
	for _, g := range []struct{ cells, per int }{{16, 2}, {8, 6}} {
		for y := 0; y < g.cells; y++ {
			for x := 0; x < g.cells; x++ {
				for k := 0; k < g.per; k++ {
					a = append(a, anchor{(float32(x) + 0.5) / float32(g.cells), (float32(y) + 0.5) / float32(g.cells)})
				}
			}
		}
	}
	return a
}()

// candidate is one decoded detection in input-normalised coordinates.
type candidate struct {
	score float32
	// x0, y0, x1, y1 box corners, then keypoints x, y.
	v [4 + 2*NumKeypoints]float32
}

// sigmoid with MediaPipe's score clipping at +-100.
func sigmoid(x float32) float32 {
	x = min(max(x, -100), 100)
	return float32(1 / (1 + math.Exp(-float64(x))))
}

// decode turns raw scores [n] and regressors [n][16] of the anchors
// starting at first into candidates scoring at least threshold, appended to
// dst. Box = anchor + raw/256 (centre), size raw/256; keypoints likewise.
func decode(dst []candidate, scores, regs []float32, first int, threshold float32) []candidate {
	for i, raw := range scores {
		s := sigmoid(raw)
		if s < threshold {
			continue
		}
		a := anchors[first+i]
		r := regs[i*blazeCoords : (i+1)*blazeCoords]
		cx, cy := a.x+r[0]/blazeInput, a.y+r[1]/blazeInput
		w, h := r[2]/blazeInput, r[3]/blazeInput
		c := candidate{score: s}
		c.v[0], c.v[1], c.v[2], c.v[3] = cx-w/2, cy-h/2, cx+w/2, cy+h/2
		for k := 0; k < NumKeypoints; k++ {
			c.v[4+2*k] = a.x + r[4+2*k]/blazeInput
			c.v[5+2*k] = a.y + r[5+2*k]/blazeInput
		}
		dst = append(dst, c)
	}
	return dst
}

// iou is the intersection over union of two candidates' boxes (0 when
// either is empty).
func iou(a, b *candidate) float32 {
	ix := min(a.v[2], b.v[2]) - max(a.v[0], b.v[0])
	iy := min(a.v[3], b.v[3]) - max(a.v[1], b.v[1])
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := ix * iy
	union := (a.v[2]-a.v[0])*(a.v[3]-a.v[1]) + (b.v[2]-b.v[0])*(b.v[3]-b.v[1]) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// suppressIoU is MediaPipe's min_suppression_threshold for BlazeFace.
const suppressIoU = 0.3

// suppress merges overlapping candidates, best score first: every
// candidate whose IoU with the best remaining one exceeds suppressIoU joins
// its group; with blend the group becomes its score-weighted mean (boxes
// and keypoints) carrying the best score (MediaPipe's WEIGHTED
// non-maximum suppression), otherwise the best one stands for the group.
// cands is reordered.
func suppress(cands []candidate, blend bool) []candidate {
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	var out []candidate
	rest := cands
	for len(rest) > 0 {
		top := rest[0]
		var acc [len(top.v)]float64
		var wsum float64
		keep := rest[:0:0]
		for i := range rest {
			c := &rest[i]
			if i == 0 || iou(&top, c) > suppressIoU {
				w := float64(c.score)
				for k, v := range c.v {
					acc[k] += w * float64(v)
				}
				wsum += w
				continue
			}
			keep = append(keep, *c)
		}
		if blend && wsum > 0 {
			for k := range top.v {
				top.v[k] = float32(acc[k] / wsum)
			}
		}
		out = append(out, top)
		rest = keep
	}
	return out
}
