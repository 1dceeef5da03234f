package head

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// Miss is one misclassified row.
type Miss struct {
	Index      int     `json:"index"`      // position of the row in the evaluated set
	True       int32   `json:"true"`       // true class
	Pred       int32   `json:"pred"`       // predicted class
	Confidence float64 `json:"confidence"` // calibrated probability of Pred
}

// Eval holds classification metrics on a labelled set. Probabilities are
// the model's calibrated ones (softmax(logits/Temperature)).
type Eval struct {
	Classes   []string  `json:"classes"`
	N         int       `json:"n"`
	Accuracy  float64   `json:"accuracy"`
	TopK      []float64 `json:"top_k"` // TopK[j] is the top-(j+1) accuracy, j < min(5, classes)
	Precision []float64 `json:"precision"`
	Recall    []float64 `json:"recall"`
	F1        []float64 `json:"f1"`
	Support   []int     `json:"support"` // true rows per class
	MacroF1   float64   `json:"macro_f1"`
	LogLoss   float64   `json:"log_loss"`  // mean negative log-likelihood
	ECE       float64   `json:"ece"`       // expected calibration error, 15 equal-width bins
	Confusion [][]int   `json:"confusion"` // Confusion[true][pred]
	Errors    []Miss    `json:"errors"`    // misclassified rows, most confident first
}

// Evaluate runs the model on every row of d (which must carry labels) and
// computes the metrics.
func Evaluate(m *Model, d Data) (*Eval, error) {
	k := m.NumClasses()
	if d.D != m.Dim() {
		return nil, fmt.Errorf("evaluate: rows have %d features, model takes %d", d.D, m.Dim())
	}
	if err := d.Validate(k); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	if d.Y == nil {
		return nil, errors.New("evaluate: data has no labels")
	}
	n := d.Rows()
	probs := make([]float32, n*k)
	m.logitsData(d, probs, runtime.GOMAXPROCS(0))
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = d.Label(i)
		softmaxInPlace(probs[i*k:(i+1)*k], 1/m.Temperature)
	}
	return EvaluateProbs(probs, labels, m.Classes)
}

// EvaluateProbs computes the metrics from class probabilities probs
// [len(labels)*len(classes)] (e.g. from an exported model).
func EvaluateProbs(probs []float32, labels []int32, classes []string) (*Eval, error) {
	k, n := len(classes), len(labels)
	if k < 2 || len(probs) != n*k {
		return nil, fmt.Errorf("evaluate: %d probabilities for %d rows of %d classes", len(probs), n, k)
	}
	e := &Eval{Classes: classes, N: n, Confusion: make([][]int, k), Support: make([]int, k)}
	for i := range e.Confusion {
		e.Confusion[i] = make([]int, k)
	}
	topN := min(5, k)
	top := make([]int, topN)
	const bins = 15
	var cnt [bins]int
	var conf, acc [bins]float64
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return nil, fmt.Errorf("evaluate: row %d: label %d out of range [0, %d)", i, y, k)
		}
		p := probs[i*k : (i+1)*k]
		pred := argmax(p)
		e.Confusion[y][pred]++
		e.Support[y]++
		// rank of the true class: number of classes with a higher probability
		rank := 0
		for j, v := range p {
			if v > p[y] || (v == p[y] && j < int(y)) {
				rank++
			}
		}
		if rank < topN {
			top[rank]++
		}
		e.LogLoss -= math.Log(math.Max(float64(p[y]), 1e-15))
		c := float64(p[pred])
		bi := min(bins-1, max(0, int(c*bins)))
		cnt[bi]++
		conf[bi] += c
		if pred == int(y) {
			acc[bi]++
		} else {
			e.Errors = append(e.Errors, Miss{Index: i, True: y, Pred: int32(pred), Confidence: c})
		}
	}
	nf := float64(max(1, n))
	e.LogLoss /= nf
	cum := 0
	e.TopK = make([]float64, topN)
	for j := range top {
		cum += top[j]
		e.TopK[j] = float64(cum) / nf
	}
	e.Accuracy = e.TopK[0]
	for b := 0; b < bins; b++ {
		e.ECE += math.Abs(acc[b]-conf[b]) / nf
	}
	e.Precision, e.Recall, e.F1 = make([]float64, k), make([]float64, k), make([]float64, k)
	for c := 0; c < k; c++ {
		tp := e.Confusion[c][c]
		predC := 0
		for t := 0; t < k; t++ {
			predC += e.Confusion[t][c]
		}
		if predC > 0 {
			e.Precision[c] = float64(tp) / float64(predC)
		}
		if e.Support[c] > 0 {
			e.Recall[c] = float64(tp) / float64(e.Support[c])
		}
		if p, r := e.Precision[c], e.Recall[c]; p+r > 0 {
			e.F1[c] = 2 * p * r / (p + r)
		}
		e.MacroF1 += e.F1[c] / float64(k)
	}
	slices.SortStableFunc(e.Errors, func(a, b Miss) int {
		switch {
		case a.Confidence > b.Confidence:
			return -1
		case a.Confidence < b.Confidence:
			return 1
		}
		return 0
	})
	return e, nil
}

// WriteText writes a human-readable report: summary, per-class table and
// the confusion matrix (rows: true class, columns: predicted class).
func (e *Eval) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "rows %d  accuracy %.4f", e.N, e.Accuracy)
	for j := 1; j < len(e.TopK); j++ {
		fmt.Fprintf(&b, "  top-%d %.4f", j+1, e.TopK[j])
	}
	fmt.Fprintf(&b, "\nmacro-F1 %.4f  log loss %.4f  ECE %.4f\n\n", e.MacroF1, e.LogLoss, e.ECE)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class\tprecision\trecall\tF1\tsupport\t")
	for c, name := range e.Classes {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%d\t\n", name, e.Precision[c], e.Recall[c], e.F1[c], e.Support[c])
	}
	tw.Flush()
	b.WriteString("\nconfusion matrix (rows: true, columns: predicted)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, name := range e.Classes {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw)
	for t, row := range e.Confusion {
		fmt.Fprintf(tw, "%s\t", e.Classes[t])
		for _, v := range row {
			fmt.Fprintf(tw, "%d\t", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}
