package head

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/headtune/headtune/convtail"
	"github.com/headtune/headtune/dense"
)

// FormatVersion is the newest head file format Load reads. Save writes the
// oldest version that holds the model, so that older builds keep reading
// heads that use nothing new: PlainFormatVersion, or FormatVersion for a
// head with a ConvTail (which an older build would drop silently).
const FormatVersion = 2

// PlainFormatVersion is the version of heads without a ConvTail.
const PlainFormatVersion = 1

// ConvLayer is one of the backbone's own convolutions fine-tuned with the
// head (--tune-layers on a convolutional tail): its place in the backbone
// graph and its tuned weights, batch norm folded.
type ConvLayer struct {
	// Conv names the Conv node; BatchNorm the BatchNormalization folded
	// into it ("" when there was none). See backbone.ConvNode.
	Conv      string `json:"conv"`
	BatchNorm string `json:"batch_norm,omitempty"`
	convtail.Layer
}

// validateLayer checks layer i of a model or of a training configuration.
func validateLayer(l dense.Layer, i int) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	return nil
}

// BackboneRef identifies the feature extractor a head was trained against.
// Two refs match when ModelHash, FeatureTensor, TuneCut and the (canonicalised)
// Preprocess JSON are equal; ID is informative (a human-readable name).
type BackboneRef struct {
	ID            string          `json:"id"`             // e.g. "mobilenet_v2_block10"
	ModelHash     string          `json:"model_hash"`     // content hash of the backbone ONNX file
	FeatureTensor string          `json:"feature_tensor"` // name of the tensor the features were read from
	Preprocess    json.RawMessage `json:"preprocess,omitempty"`
	TuneCut       string          `json:"tune_cut,omitempty"` // tensor before the tuned layers (--tune-layers), "" otherwise
}

// TrainInfo records how a head was trained.
type TrainInfo struct {
	Config     Config  `json:"config"`
	Seed       int64   `json:"seed"`
	Threads    int     `json:"threads"`
	TrainRows  int     `json:"train_rows"`
	ValRows    int     `json:"val_rows"`
	Epochs     int     `json:"epochs"`     // epochs run (minibatch optimisers)
	Iterations int     `json:"iterations"` // L-BFGS iterations or optimiser steps
	BestEpoch  int     `json:"best_epoch"` // epoch whose weights were kept (early stopping), 0 when not applicable
	Stopped    string  `json:"stopped"`    // why training ended
	Seconds    float64 `json:"seconds"`    // wall time of Train
	// Augment describes the augmented views trained on, "" without.
	Augment string `json:"augment,omitempty"`
	// Split records how the data was divided, so that evaluation finds the
	// same test rows without being told the fractions again; nil in heads
	// trained before it was recorded, or by a caller that did not set it.
	Split *SplitInfo `json:"split,omitempty"`
	// Data says how the training rows were held when their features did
	// not fit the memory budget; nil when they were all in memory.
	Data *DataInfo `json:"data,omitempty"`
}

// Ways of holding training features that do not fit in memory
// (DataInfo.Mode).
const (
	DataStreamed  = "streamed"  // minibatches read block by block, every training row used
	DataSubsample = "subsample" // trained in memory on a subset of the training rows
)

// DataInfo records how a head was trained on more features than memory.
type DataInfo struct {
	Mode string `json:"mode"` // DataStreamed or DataSubsample
	// Rows were trained on, of Of training rows.
	Rows int `json:"rows"`
	Of   int `json:"of"`
	// Method says how the rows were read or chosen, in words.
	Method string `json:"method"`
	// BudgetBytes is the feature-memory budget that applied.
	BudgetBytes int64 `json:"budget_bytes"`
}

// SplitInfo records a train/validation/test division of a dataset view.
type SplitInfo struct {
	// Source says where the division came from: "folders" (the dataset's
	// own train/val/test folders, with validation rows drawn from train when
	// it had no val folder) or "stratified" (drawn per class with Seed).
	Source string  `json:"source"`
	Seed   int64   `json:"seed"`
	Val    float64 `json:"val_fraction"`  // fraction asked for when drawn
	Test   float64 `json:"test_fraction"` // fraction asked for when drawn
	// View is the dataset view file the rows index, and Fingerprint the
	// hex SHA-256 of its entries (path, label, split, image hash, in order):
	// a view that changed since training no longer matches the rows.
	View        string `json:"view"`
	Fingerprint string `json:"fingerprint"`
	Dataset     string `json:"dataset,omitempty"` // the dataset's root, for reports
	Rows        int    `json:"rows"`              // rows of the view
	// ValIndex and TestIndex are the view rows (0-based, ascending) of the
	// validation and test sets; every other row was training data.
	ValIndex  []int `json:"val_index"`
	TestIndex []int `json:"test_index"`
	// Redraw, when true, means ValIndex and TestIndex were not stored
	// (millions of rows): the split is drawn again from the rows' labels
	// and split folders with Seed, Val and Test, which gives the same rows
	// while Fingerprint matches.
	Redraw bool `json:"redraw,omitempty"`
	// Skipped says, one sentence each, why a requested validation or test
	// split was not made (too few images per class); see PlanSplit.
	Skipped []string `json:"skipped,omitempty"`
}

// Model is a trained head.
//
// Computation for one feature row x of length Dim():
//
//	h0 = (x - Mean) / Std            (skipped when Mean is nil)
//	h(l+1) = act_l(W_l · h_l + B_l)  for each layer
//	probs  = softmax(h_L / Temperature)
//
// The first Tuned layers were initialised from the backbone's own dense
// layers (--tune-layers); the remaining layers are the new head.
//
// A head with a ConvTail was trained with the backbone's last convolutions
// (ConvTail, first to last): its feature rows are the globally pooled
// output of those layers with the tuned weights, which predict and export
// obtain by writing ConvTail back into the backbone graph
// (backbone.WriteConvChain); ConvFeatures computes them in Go from the
// spatial maps the layers take. A Model is
// safe for concurrent use by several goroutines once built. Prediction
// methods assume a valid model (Validate); Train and Load only return valid
// ones.
type Model struct {
	Version int           `json:"version"`
	Kind    string        `json:"kind"` // "linear" or "mlp"
	Classes []string      `json:"classes"`
	Mean    []float32     `json:"-"` // [Dim()], nil when standardisation is off
	Std     []float32     `json:"-"` // [Dim()], strictly positive
	Layers  []dense.Layer `json:"layers"`
	Tuned   int           `json:"tuned"`
	// ConvTail holds the tuned convolutions in front of the pooling (nil
	// for heads on frozen features); the last one's OutC is Dim().
	ConvTail    []ConvLayer        `json:"conv_tail,omitempty"`
	Temperature float64            `json:"temperature"`
	Backbone    BackboneRef        `json:"backbone"`
	Train       TrainInfo          `json:"train"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`
	// Calibration says what Temperature was fitted on (nil in heads
	// written before it was recorded).
	Calibration *Calibration `json:"calibration,omitempty"`
	// Conformal holds held-out scores for prediction sets with a coverage
	// guarantee; nil when the head had no held-out predictions.
	Conformal *Conformal `json:"conformal,omitempty"`
	// Domain says how far from the training data inputs may lie before
	// PredictGuarded treats them as outside it; nil without standardisation.
	Domain *Domain `json:"domain,omitempty"`
}

// Dim is the length of the feature vectors the model takes.
func (m *Model) Dim() int {
	if len(m.Layers) == 0 {
		return 0
	}
	return m.Layers[0].In
}

// NumClasses is the number of outputs, len(m.Classes).
func (m *Model) NumClasses() int { return len(m.Classes) }

// Validate checks that the model is internally consistent: shapes chain,
// standardisation matches the input width, numbers are finite.
func (m *Model) Validate() error {
	if m == nil {
		return errors.New("nil model")
	}
	if m.Kind != KindLinear && m.Kind != KindMLP {
		return fmt.Errorf("unknown head kind %q", m.Kind)
	}
	if len(m.Classes) < 2 {
		return fmt.Errorf("%d classes, need at least 2", len(m.Classes))
	}
	if len(m.Layers) == 0 {
		return errors.New("no layers")
	}
	if m.Tuned < 0 || m.Tuned >= len(m.Layers) {
		return fmt.Errorf("tuned layer count %d out of range for %d layers", m.Tuned, len(m.Layers))
	}
	for i, l := range m.Layers {
		if err := validateLayer(l, i); err != nil {
			return err
		}
		if i > 0 && l.In != m.Layers[i-1].Out {
			return fmt.Errorf("layer %d takes %d inputs but layer %d gives %d", i, l.In, i-1, m.Layers[i-1].Out)
		}
		if !allFinite(l.W) || !allFinite(l.B) {
			return fmt.Errorf("layer %d: non-finite weights", i)
		}
	}
	last := m.Layers[len(m.Layers)-1]
	if last.Out != len(m.Classes) {
		return fmt.Errorf("last layer gives %d outputs for %d classes", last.Out, len(m.Classes))
	}
	if last.Act != dense.ActNone {
		return fmt.Errorf("last layer has activation %q, want none (logits)", last.Act)
	}
	if (m.Mean == nil) != (m.Std == nil) {
		return errors.New("standardisation: mean and std must both be set or both be nil")
	}
	if m.Mean != nil {
		if len(m.Mean) != m.Dim() || len(m.Std) != m.Dim() {
			return fmt.Errorf("standardisation for %d/%d features, model takes %d", len(m.Mean), len(m.Std), m.Dim())
		}
		if !allFinite(m.Mean) {
			return errors.New("standardisation: non-finite mean")
		}
		for i, s := range m.Std {
			if !(s > 0) || math.IsInf(float64(s), 0) {
				return fmt.Errorf("standardisation: std[%d] = %g, want > 0", i, s)
			}
		}
	}
	for i := range m.ConvTail {
		l := &m.ConvTail[i].Layer
		if err := l.Validate(); err != nil {
			return fmt.Errorf("conv tail layer %d (%s): %w", i, m.ConvTail[i].Conv, err)
		}
		if i > 0 {
			p := &m.ConvTail[i-1].Layer
			if l.InC != p.OutC || l.InH != p.OutH() || l.InW != p.OutW() {
				return fmt.Errorf("conv tail layer %d does not take layer %d's output", i, i-1)
			}
		}
		if !allFinite(l.W) || !allFinite(l.B) {
			return fmt.Errorf("conv tail layer %d: non-finite weights", i)
		}
	}
	if n := len(m.ConvTail); n > 0 && m.ConvTail[n-1].OutC != m.Dim() {
		return fmt.Errorf("conv tail gives %d channels, the head takes %d features", m.ConvTail[n-1].OutC, m.Dim())
	}
	if !(m.Temperature > 0) || math.IsInf(m.Temperature, 0) {
		return fmt.Errorf("temperature %g, want > 0", m.Temperature)
	}
	if m.Conformal != nil {
		if err := m.Conformal.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// ConvInputLen is the number of values of one spatial map the ConvTail
// takes (C*H*W), 0 without a ConvTail.
func (m *Model) ConvInputLen() int {
	if len(m.ConvTail) == 0 {
		return 0
	}
	return m.ConvTail[0].InLen()
}

// ConvFeatures runs the ConvTail on n spatial maps (n x ConvInputLen()
// values, NCHW per map) and returns their pooled features, n x Dim(), in
// a new slice: the rows the head takes. threads <= 0 uses GOMAXPROCS.
func (m *Model) ConvFeatures(maps []float32, n, threads int) ([]float32, error) {
	if len(m.ConvTail) == 0 {
		return nil, errors.New("head has no conv tail")
	}
	if len(maps) != n*m.ConvInputLen() {
		return nil, fmt.Errorf("%d values for %d maps of %d", len(maps), n, m.ConvInputLen())
	}
	cm := convtail.Model{}
	for _, l := range m.ConvTail {
		cm.Tail = append(cm.Tail, l.Layer)
	}
	return cm.Features(convtail.Data{X: maps, N: n}, threads), nil
}

func allFinite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

// maxWidth is the widest activation vector (input included).
func (m *Model) maxWidth() int {
	w := m.Dim()
	for _, l := range m.Layers {
		w = max(w, l.Out)
	}
	return w
}

// Scratch holds the intermediate activations of one forward pass so that
// repeated predictions allocate nothing. A Scratch may be reused across
// calls and models but not shared between goroutines. The zero value is
// ready to use.
type Scratch struct {
	a, b []float32
}

func (s *Scratch) ensure(n int) {
	if cap(s.a) < n {
		s.a = make([]float32, n)
		s.b = make([]float32, n)
	}
	s.a, s.b = s.a[:n], s.b[:n]
}

// Logits computes the raw outputs (before temperature) for one feature row
// x [Dim()] into logits [NumClasses()]. s may be nil (a temporary one is
// allocated).
func (m *Model) Logits(x, logits []float32, s *Scratch) error {
	if len(x) != m.Dim() {
		return fmt.Errorf("logits: feature vector has %d values, model takes %d", len(x), m.Dim())
	}
	if len(logits) != len(m.Classes) {
		return fmt.Errorf("logits: output has room for %d values, model has %d classes", len(logits), len(m.Classes))
	}
	if s == nil {
		s = new(Scratch)
	}
	m.logitsRow(x, logits, s)
	return nil
}

// logitsRow runs the network on one row; shapes are already checked.
func (m *Model) logitsRow(x, logits []float32, s *Scratch) {
	s.ensure(m.maxWidth())
	in := x
	if m.Mean != nil {
		h := s.a[:len(x)]
		for i, v := range x {
			h[i] = (v - m.Mean[i]) / m.Std[i]
		}
		in = h
	}
	for li := range m.Layers {
		l := &m.Layers[li]
		var out []float32
		if li == len(m.Layers)-1 {
			out = logits
		} else if len(in) > 0 && &in[0] == &s.a[0] {
			out = s.b[:l.Out]
		} else {
			out = s.a[:l.Out]
		}
		denseRow(l, in, out)
		in = out
	}
}

// denseRow computes out = act(W·in + B) for one row.
func denseRow(l *dense.Layer, in, out []float32) {
	for o := 0; o < l.Out; o++ {
		v := dot(in, l.W[o*l.In:(o+1)*l.In]) + l.B[o]
		if l.Act == dense.ActReLU && v < 0 {
			v = 0
		}
		out[o] = v
	}
}

// Predict computes calibrated class probabilities softmax(logits/Temperature)
// for one feature row x [Dim()] into probs [NumClasses()].
func (m *Model) Predict(x, probs []float32, s *Scratch) error {
	if err := m.Logits(x, probs, s); err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	softmaxInPlace(probs, 1/m.Temperature)
	return nil
}

// softmaxInPlace replaces z by softmax(beta*z), computed in float64.
func softmaxInPlace(z []float32, beta float64) {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, beta*float64(v))
	}
	var sum float64
	for i, v := range z {
		e := math.Exp(beta*float64(v) - mx)
		sum += e
		z[i] = float32(e)
	}
	inv := 1 / sum
	for i := range z {
		z[i] = float32(float64(z[i]) * inv)
	}
}

// LogitsBatch computes raw logits for n rows X [n*Dim()] into out
// [n*NumClasses()], using up to GOMAXPROCS goroutines. Results do not depend
// on the number of goroutines.
func (m *Model) LogitsBatch(X []float32, n int, out []float32) error {
	return m.batch(X, n, out, false)
}

// PredictBatch computes calibrated probabilities for n rows X [n*Dim()] into
// probs [n*NumClasses()], using up to GOMAXPROCS goroutines.
func (m *Model) PredictBatch(X []float32, n int, probs []float32) error {
	return m.batch(X, n, probs, true)
}

func (m *Model) batch(X []float32, n int, out []float32, soft bool) error {
	d, k := m.Dim(), len(m.Classes)
	if n < 0 || len(X) != n*d {
		return fmt.Errorf("batch: %d values for %d rows of %d features", len(X), n, d)
	}
	if len(out) != n*k {
		return fmt.Errorf("batch: output has %d values, want %d rows x %d classes", len(out), n, k)
	}
	workers := min(runtime.GOMAXPROCS(0), (n+63)/64)
	if workers < 1 {
		workers = 1
	}
	beta := 1 / m.Temperature
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s Scratch
			for r := lo; r < hi; r++ {
				o := out[r*k : (r+1)*k]
				m.logitsRow(X[r*d:(r+1)*d], o, &s)
				if soft {
					softmaxInPlace(o, beta)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// CheckBackbone refuses features from another backbone: it returns an error
// naming both sides when got differs from the backbone the head was trained
// against (model hash, feature tensor, tuning cut or preprocessing).
func (m *Model) CheckBackbone(got BackboneRef) error {
	want := m.Backbone
	var diffs []string
	if want.ModelHash != got.ModelHash {
		diffs = append(diffs, fmt.Sprintf("model hash: the head expects %s, the backbone has %s", short(want.ModelHash), short(got.ModelHash)))
	}
	if want.FeatureTensor != got.FeatureTensor {
		diffs = append(diffs, fmt.Sprintf("feature tensor: the head expects %s, got %s", orNone(want.FeatureTensor), orNone(got.FeatureTensor)))
	}
	if want.TuneCut != got.TuneCut {
		diffs = append(diffs, fmt.Sprintf("tuning cut: the head expects %s, got %s", orNone(want.TuneCut), orNone(got.TuneCut)))
	}
	wp, gp := canonicalJSON(want.Preprocess), canonicalJSON(got.Preprocess)
	if wp != gp {
		diffs = append(diffs, fmt.Sprintf("preprocessing: the head expects %s, got %s", orNone(wp), orNone(gp)))
	}
	if len(diffs) == 0 {
		return nil
	}
	if want.ID != "" && want.ID == got.ID {
		return fmt.Errorf("backbone %s changed since the head was trained: %s (restore the file, or extract and train again)", want.ID, joinSemi(diffs))
	}
	return fmt.Errorf("head was trained against backbone %s, not %s: %s",
		orNone(want.ID), orNone(got.ID), joinSemi(diffs))
}

// short abbreviates a hash to 16 characters, enough to tell two apart.
func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return orNone(h)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func joinSemi(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x)
	}
	return b.String()
}

// canonicalJSON re-encodes a JSON value with sorted keys and no insignificant
// white space, so that two encodings of the same spec compare equal.
func canonicalJSON(raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return ""
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(out)
}

// CheckClasses checks a requested class count against the classes found in
// the data. want <= 0 accepts whatever was found. The error lists the classes
// found.
func CheckClasses(want int, found []string) error {
	if want > 0 && want != len(found) {
		return fmt.Errorf("--classes %d but the data has %d classes: %s", want, len(found), joinComma(found))
	}
	if len(found) < 2 {
		return fmt.Errorf("need at least 2 classes, the data has %d: %s", len(found), joinComma(found))
	}
	return nil
}

func joinComma(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}
