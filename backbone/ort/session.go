package ort

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	onnxruntime "github.com/yalue/onnxruntime_go"
)

// SessionOptions configures an ONNX Runtime session.
type SessionOptions struct {
	// Threads is ONNX Runtime's intra-op thread count; 0 leaves its default
	// (one per core).
	Threads int
	// Device is "cpu" (default) or "cuda".
	Device string
	// DeviceID selects the GPU for Device "cuda".
	DeviceID int
	// Spinning lets idle intra-op threads spin-wait. It is off by default:
	// spinning threads steal the cores that decode workers need (measured
	// 172 vs 234 images/s for MobileNetV2 under decode load, see README).
	Spinning bool
	// ProfilePrefix, when set, turns on ONNX Runtime's profiler: every node
	// run is recorded and the trace is written when the session is closed,
	// to a JSON file (chrome://tracing format) that ONNX Runtime names
	// PREFIX_<date>_<time>.json; Session.ProfileFile gives its path after
	// Close. Give each session its own prefix: the file is found by it.
	// Profiling costs time on every run: for measurements only.
	ProfilePrefix string
	// OptimizedModelPath, when set, makes ONNX Runtime write the graph it
	// actually runs (after its fusions and layout changes, which are
	// specific to this CPU and library) to that file when the session is
	// created. Its node names are the ones a profile reports.
	OptimizedModelPath string
}

// Session runs one ONNX model with one float32 input of per-sample shape
// InputShape and float32 outputs of OutputSizes values per sample. It is
// safe for concurrent use: ONNX Runtime's sessions are, and Run keeps no
// state between calls. Close releases every C-side object.
type Session struct {
	sess        *onnxruntime.DynamicAdvancedSession
	inputName   string
	outputNames []string
	inputShape  []int64 // per sample, batch axis excluded
	outputSizes []int
	outShapes   [][]int64 // per sample; nil: [size]
	maxBatch    int       // 0: any; 1 for models with a fixed batch of 1
	// profilePrefix and profileSince find the profile ONNX Runtime writes
	// on Close; profileFile is its path afterwards.
	profilePrefix string
	profileSince  time.Time
	profileFile   string
}

// SessionSpec names what a Session feeds and reads.
type SessionSpec struct {
	Input       string  // input tensor name
	InputShape  []int64 // per-sample input shape, e.g. [3,224,224] or [224,224,3]
	Outputs     []string
	OutputSizes []int // values per sample of each output
	// OutputShapes, when set, gives each output's per-sample shape (batch
	// axis excluded; the product must equal its OutputSizes entry), for
	// models whose outputs are not [N, size], such as a detector's
	// [N, anchors, 16]. Nil means [N, size] for every output.
	OutputShapes [][]int64
	// FixedBatch is the model's fixed batch size (1 for models exported
	// without a dynamic batch axis), or 0 when the batch axis is dynamic.
	FixedBatch int
}

// NewSession compiles model (serialised ONNX bytes, not retained) into an
// ONNX Runtime session. Init must have been called.
func NewSession(model []byte, spec SessionSpec, opt SessionOptions) (*Session, error) {
	if !onnxruntime.IsInitialized() {
		return nil, fmt.Errorf("ONNX Runtime is not loaded (call Init first)")
	}
	if len(spec.Outputs) == 0 || len(spec.Outputs) != len(spec.OutputSizes) {
		return nil, fmt.Errorf("session: %d outputs with %d sizes", len(spec.Outputs), len(spec.OutputSizes))
	}
	if spec.OutputShapes != nil {
		if len(spec.OutputShapes) != len(spec.Outputs) {
			return nil, fmt.Errorf("session: %d outputs with %d shapes", len(spec.Outputs), len(spec.OutputShapes))
		}
		for i, sh := range spec.OutputShapes {
			n := int64(1)
			for _, d := range sh {
				n *= d
			}
			if n != int64(spec.OutputSizes[i]) {
				return nil, fmt.Errorf("session: output %s has shape %v (%d values) but size %d", spec.Outputs[i], sh, n, spec.OutputSizes[i])
			}
		}
	}
	so, err := onnxruntime.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer so.Destroy()
	if opt.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opt.Threads); err != nil {
			return nil, fmt.Errorf("set %d threads: %w", opt.Threads, err)
		}
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	spin := "0"
	if opt.Spinning {
		spin = "1"
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", spin); err != nil {
		return nil, err
	}
	// ONNX Runtime 1.20+ (its WeightBiasQuantization transformer) gives a
	// Conv, Gemm or MatMul with float weights that sits between a
	// DequantizeLinear and a QuantizeLinear int8 weights of its own, one
	// scale per tensor: the layers that `models quantize --float` and
	// --min-cosine keep float32 on purpose would run int8, less precisely
	// than headtune's per-channel weights, and every speed and accuracy
	// measurement of mixed precision would be of that instead. Unknown
	// names are ignored, so older libraries are unaffected.
	if err := so.AddSessionConfigEntry("optimization.disable_specified_optimizers", "WeightBiasQuantization"); err != nil {
		return nil, err
	}
	if opt.ProfilePrefix != "" {
		if err := so.EnableProfiling(opt.ProfilePrefix); err != nil {
			return nil, fmt.Errorf("enable profiling to %s: %w", opt.ProfilePrefix, err)
		}
	}
	if opt.OptimizedModelPath != "" {
		if err := so.SetOptimizedModelFilePath(opt.OptimizedModelPath); err != nil {
			return nil, fmt.Errorf("optimized model path %s: %w", opt.OptimizedModelPath, err)
		}
	}
	switch opt.Device {
	case "", "cpu":
	case "cuda":
		if err := appendCUDA(so, opt.DeviceID); err != nil {
			return nil, fmt.Errorf("--device cuda: this ONNX Runtime library cannot use CUDA (%v); the onnxruntime-node library that `make setup` fetches is CPU-only: point --ort-lib at a GPU build of libonnxruntime (onnxruntime-gpu 1.24+, with its CUDA provider libraries beside it)", err)
		}
	default:
		return nil, fmt.Errorf("unknown device %q: expected cpu or cuda", opt.Device)
	}
	// ONNX Runtime stamps the profile's name to the second: one second
	// back, so a file named in the second the session starts is found.
	since := time.Now().Add(-time.Second)
	sess, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(model, []string{spec.Input}, spec.Outputs, so)
	if err != nil {
		return nil, fmt.Errorf("create ONNX Runtime session: %w", err)
	}
	return &Session{
		profilePrefix: opt.ProfilePrefix,
		profileSince:  since,
		sess:          sess,
		inputName:     spec.Input,
		outputNames:   append([]string(nil), spec.Outputs...),
		inputShape:    append([]int64(nil), spec.InputShape...),
		outputSizes:   append([]int(nil), spec.OutputSizes...),
		outShapes:     spec.OutputShapes,
		maxBatch:      spec.FixedBatch,
	}, nil
}

// InputLen is the number of float32 values of one sample's input.
func (s *Session) InputLen() int {
	n := 1
	for _, d := range s.inputShape {
		n *= int(d)
	}
	return n
}

// OutputSizes returns the per-sample value counts of the outputs.
func (s *Session) OutputSizes() []int { return append([]int(nil), s.outputSizes...) }

// MaxBatch is the largest batch Run accepts in one call (0: unlimited).
func (s *Session) MaxBatch() int { return s.maxBatch }

// Run feeds n samples. in holds n*InputLen() values (batch-major); outs[i]
// receives n*OutputSizes()[i] values. Neither is retained. When ctx is
// cancelled during the run, ONNX Runtime is told to stop and ctx.Err() is
// returned. Models with a fixed batch of 1 are run sample by sample.
func (s *Session) Run(ctx context.Context, in []float32, n int, outs ...[]float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(outs) != len(s.outputNames) {
		return fmt.Errorf("run: %d output buffers for %d outputs", len(outs), len(s.outputNames))
	}
	inLen := s.InputLen()
	if len(in) < n*inLen {
		return fmt.Errorf("run: input holds %d values, need %d for %d samples", len(in), n*inLen, n)
	}
	for i, o := range outs {
		if len(o) < n*s.outputSizes[i] {
			return fmt.Errorf("run: output %s holds %d values, need %d", s.outputNames[i], len(o), n*s.outputSizes[i])
		}
	}
	if s.maxBatch > 0 && n > s.maxBatch {
		step := s.maxBatch
		sub := make([][]float32, len(outs))
		for start := 0; start < n; start += step {
			m := min(step, n-start)
			for i, o := range outs {
				sub[i] = o[start*s.outputSizes[i] : (start+m)*s.outputSizes[i]]
			}
			if err := s.Run(ctx, in[start*inLen:(start+m)*inLen], m, sub...); err != nil {
				return err
			}
		}
		return nil
	}
	if n == 0 {
		return nil
	}
	shape := make(onnxruntime.Shape, 0, len(s.inputShape)+1)
	shape = append(shape, int64(n))
	shape = append(shape, s.inputShape...)
	inT, err := onnxruntime.NewTensor(shape, in[:n*inLen])
	if err != nil {
		return fmt.Errorf("input tensor: %w", err)
	}
	defer inT.Destroy()
	values := make([]onnxruntime.Value, len(outs))
	for i, o := range outs {
		shape := onnxruntime.NewShape(int64(n), int64(s.outputSizes[i]))
		if s.outShapes != nil {
			shape = append(onnxruntime.NewShape(int64(n)), s.outShapes[i]...)
		}
		t, err := onnxruntime.NewTensor(shape, o[:n*s.outputSizes[i]])
		if err != nil {
			return fmt.Errorf("output tensor: %w", err)
		}
		defer t.Destroy()
		values[i] = t
	}
	// Run options of its own: ONNX Runtime's terminate flag lives there,
	// and on shared options one cancelled call would stop every call in
	// flight on the session, and every later one until the flag is unset.
	ro, err := onnxruntime.NewRunOptions()
	if err != nil {
		return fmt.Errorf("run options: %w", err)
	}
	defer ro.Destroy()
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		ro.Terminate()
		close(terminated)
	})
	err = s.sess.RunWithOptions([]onnxruntime.Value{inT}, values, ro)
	if !stop() {
		// The run was cancelled: report that rather than ORT's message,
		// once Terminate is done with ro (destroyed on return).
		<-terminated
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", s.inputName, err)
	}
	return nil
}

// Close destroys the session. Safe to call twice. With
// SessionOptions.ProfilePrefix set, ONNX Runtime writes the profile now, and
// Close fails when it cannot find it.
func (s *Session) Close() error {
	if s == nil || s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	if err == nil && s.profilePrefix != "" {
		s.profileFile, err = findProfile(s.profilePrefix, s.profileSince)
	}
	return err
}

// ProfileFile is the path of the profile ONNX Runtime wrote on Close, for a
// session made with SessionOptions.ProfilePrefix; "" before Close or
// without profiling. The caller owns the file (and removes it).
func (s *Session) ProfileFile() string { return s.profileFile }

// findProfile returns the newest PREFIX_*.json modified since since: ONNX
// Runtime appends the date and time to the prefix and does not say which
// file it wrote.
func findProfile(prefix string, since time.Time) (string, error) {
	names, err := filepath.Glob(prefix + "_*.json")
	if err != nil {
		return "", fmt.Errorf("profile %s_*.json: %w", prefix, err)
	}
	best, bestT := "", since
	for _, n := range names {
		st, err := os.Stat(n)
		if err != nil || st.ModTime().Before(bestT) {
			continue
		}
		best, bestT = n, st.ModTime()
	}
	if best == "" {
		return "", fmt.Errorf("ONNX Runtime wrote no profile %s_*.json", prefix)
	}
	return best, nil
}

func appendCUDA(so *onnxruntime.SessionOptions, deviceID int) error {
	cuda, err := onnxruntime.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": strconv.Itoa(deviceID)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(cuda)
}
