package faces

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/headtune/headtune/imaging"
)

// Annotation is what Annotate draws for one face: its box and keypoints,
// and a label above the box ("" for none).
type Annotation struct {
	Face  Face
	Label string
}

// Colours of the drawing: boxes, keypoints (eyes, the rest) and label text.
var (
	boxColour   = color.RGBA{0, 230, 64, 255}
	eyeColour   = color.RGBA{255, 40, 40, 255}
	pointColour = color.RGBA{40, 160, 255, 255}
	textColour  = color.RGBA{0, 0, 0, 255}
)

var (
	fontOnce sync.Once
	fontFile *opentype.Font
	fontErr  error
)

// Annotate returns a copy of img with every face's box, keypoints (eyes
// red, others blue) and label drawn, line widths and text scaled to the
// image so they stay visible on large photos. img is not modified.
func Annotate(img *imaging.RGB, faces []Annotation) (*image.RGBA, error) {
	out := img.Image()
	side := float64(max(img.W, img.H))
	lw := max(2, int(math.Round(side/400)))
	for _, a := range faces {
		b := a.Face.Box
		rect(out, int(b.X), int(b.Y), int(b.X+b.W), int(b.Y+b.H), lw, boxColour)
		for k, p := range a.Face.Keypoints {
			c := pointColour
			if k == RightEye || k == LeftEye {
				c = eyeColour
			}
			r := max(2, int(math.Round(b.W/40)))
			fill(out, int(p.X)-r, int(p.Y)-r, int(p.X)+r+1, int(p.Y)+r+1, c)
		}
		if a.Label != "" {
			if err := label(out, a.Label, int(b.X), int(b.Y)-lw, max(12, b.W/7)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// DefaultLabel is the label `headtune faces --annotate` draws: the face's
// index and score.
func DefaultLabel(index int, f Face) string { return fmt.Sprintf("#%d %.2f", index, f.Score) }

func fill(m *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(m, image.Rect(x0, y0, x1, y1).Intersect(m.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}

// rect draws an axis-aligned rectangle outline lw pixels wide, inside
// (x0, y0)-(x1, y1).
func rect(m *image.RGBA, x0, y0, x1, y1, lw int, c color.RGBA) {
	fill(m, x0, y0, x1, y0+lw, c)
	fill(m, x0, y1-lw, x1, y1, c)
	fill(m, x0, y0, x0+lw, y1, c)
	fill(m, x1-lw, y0, x1, y1, c)
}

// label writes text on a box-coloured band whose bottom-left corner is
// (x, y), moved inside the image when it would leave it.
func label(m *image.RGBA, text string, x, y int, size float64) error {
	fontOnce.Do(func() { fontFile, fontErr = opentype.Parse(gobold.TTF) })
	if fontErr != nil {
		return fmt.Errorf("annotate: font: %w", fontErr)
	}
	face, err := opentype.NewFace(fontFile, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return fmt.Errorf("annotate: font: %w", err)
	}
	defer face.Close()
	d := &font.Drawer{Dst: m, Src: image.NewUniform(textColour), Face: face}
	w := d.MeasureString(text).Ceil()
	met := face.Metrics()
	h := (met.Ascent + met.Descent).Ceil()
	pad := max(2, h/8)
	bw, bh := w+2*pad, h+2*pad
	b := m.Bounds()
	x = min(max(x, b.Min.X), b.Max.X-bw)
	if y-bh < b.Min.Y {
		y = b.Min.Y + bh // no room above the box: draw inside it
	}
	y = min(y, b.Max.Y)
	fill(m, x, y-bh, x+bw, y, boxColour)
	d.Dot = fixed.P(x+pad, y-pad-met.Descent.Ceil())
	d.DrawString(text)
	return nil
}
