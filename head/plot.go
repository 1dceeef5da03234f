package head

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/headtune/headtune/internal/atomicfile"
)

// confusionGrid adapts a confusion matrix to plotter.GridXYZ: column c is
// the predicted class, row r the true class (row 0 at the top). Cells hold
// the row-normalised rate so that rare classes stay visible.
type confusionGrid struct{ m [][]int }

func (g confusionGrid) Dims() (c, r int) { return len(g.m), len(g.m) }
func (g confusionGrid) X(c int) float64  { return float64(c) }
func (g confusionGrid) Y(r int) float64  { return float64(r) }
func (g confusionGrid) Z(c, r int) float64 {
	row := g.m[len(g.m)-1-r]
	s := 0
	for _, v := range row {
		s += v
	}
	if s == 0 {
		return 0
	}
	return float64(row[c]) / float64(s)
}

// maxLabelledClasses is the largest matrix drawn with a count in every
// cell; larger ones show colours only.
const maxLabelledClasses = 40

// ConfusionPNG draws the confusion matrix of e as a heat map with the count
// in every cell (rows: true class, columns: predicted class; colour: share
// of the true class) and writes it to path as PNG, atomically. classes
// overrides e.Classes when non-nil.
func ConfusionPNG(path string, e *Eval, classes []string) error {
	if classes == nil {
		classes = e.Classes
	}
	k := len(e.Confusion)
	if k == 0 || len(classes) != k {
		return fmt.Errorf("confusion plot %s: %d class names for a %dx%d matrix", path, len(classes), k, k)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("confusion matrix (accuracy %.2f%%, %d rows)", 100*e.Accuracy, e.N)
	p.X.Label.Text = "predicted"
	p.Y.Label.Text = "true"
	pal := palette.Heat(64, 1)
	cols := pal.Colors()
	// light (low) to dark (high)
	for i, j := 0, len(cols)-1; i < j; i, j = i+1, j-1 {
		cols[i], cols[j] = cols[j], cols[i]
	}
	hm := plotter.NewHeatMap(confusionGrid{e.Confusion}, revPalette(cols))
	hm.Min, hm.Max = 0, 1
	p.Add(hm)
	if k > 1000 {
		return fmt.Errorf("confusion plot %s: %d classes is too many to draw", path, k)
	}
	var xys plotter.XYs
	var texts []string
	for r := 0; r < k; r++ {
		for c := 0; c < k; c++ {
			xys = append(xys, plotter.XY{X: float64(c), Y: float64(k - 1 - r)})
			texts = append(texts, fmt.Sprint(e.Confusion[r][c]))
		}
	}
	if k <= maxLabelledClasses {
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
		if err != nil {
			return fmt.Errorf("confusion plot %s: %w", path, err)
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].XAlign = -0.5
			lb.TextStyle[i].YAlign = -0.5
			lb.TextStyle[i].Color = color.Black
		}
		p.Add(lb)
	}
	xt := make([]plot.Tick, k)
	yt := make([]plot.Tick, k)
	for i, name := range classes {
		xt[i] = plot.Tick{Value: float64(i), Label: name}
		yt[i] = plot.Tick{Value: float64(k - 1 - i), Label: name}
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	p.X.Tick.Label.Rotation = 0.6
	p.X.Tick.Label.XAlign = -1
	p.X.Min, p.X.Max = -0.5, float64(k)-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(k)-0.5
	side := vg.Length(min(60, max(12, 1.2*float64(k)))) * vg.Centimeter
	wt, err := p.WriterTo(side, side, "png")
	if err != nil {
		return fmt.Errorf("confusion plot %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("confusion plot %s: %w", path, err)
	}
	if err := atomicfile.Write(path, buf.Bytes()); err != nil {
		return fmt.Errorf("confusion plot: %w", err)
	}
	return nil
}

// revPalette is a fixed list of colours as a palette.Palette.
type revPalette []color.Color

func (p revPalette) Colors() []color.Color { return p }
