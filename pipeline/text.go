package pipeline

import (
	"fmt"
	"io"
	"strings"
)

// ComputedText says how many images were computed, with the rate (images
// per second) only when there was work to time.
func ComputedText(n int, rate float64) string {
	if n == 0 {
		return "none computed"
	}
	return fmt.Sprintf("%d computed (%.1f img/s)", n, rate)
}

// WriteText writes the shard task's one-line summary, as `headtune extract
// --plan` shows it.
func (s *ShardSummary) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "extract: shard %d/%d: %d images, %s, %d reused, %d skipped; chunks: %d sealed now, %d found sealed, %d sealed by another attempt (%s)\n",
		s.Shard, s.Shards, s.Images, ComputedText(s.Computed, s.ImagesPerS), s.Reused, s.Skipped, s.Sealed, s.FoundSealed, s.SealedByOther, s.Out)
	return err
}

// WriteText writes what a quantization did, as `headtune models quantize`
// shows it: the model installed, the int8 features' agreement with float32,
// the most sensitive layers, the layers left float and the calibration
// images that could not be read. source is the quantized model's name.
func (r *QuantizeResult) WriteText(w io.Writer, source string) error {
	cal := r.Calibration
	fmt.Fprintf(w, "models: installed %s, int8 of %s (%s): %d nodes int8, %d left float, %s calibration on %d images\n",
		r.Installed.Meta.Name, source, r.Installed.ModelPath(), cal.QuantizedNodes, cal.LeftFloat, cal.Method, cal.Images)
	switch {
	case cal.NoRewrite:
		fmt.Fprintf(w, "models: graph rewrites off (--no-rewrite)\n")
	case cal.PoolConvSwaps > 0:
		fmt.Fprintf(w, "models: %d average pools moved after the 1x1 convolution they feed (exact; --no-rewrite keeps them)\n", cal.PoolConvSwaps)
	}
	fmt.Fprintf(w, "models: features against float32 on %d other images: cosine %.4f mean, %.4f worst\n",
		cal.CheckImages, cal.FeatureCosine, cal.MinFeatureCosine)
	if sp := cal.Speed; sp != nil {
		fmt.Fprintf(w, "models: inference on this CPU, 1 thread, batch 1: %.2f ms float32, %.2f ms int8 per image: %.2fx faster (median of %d runs each)\n",
			sp.FloatMillis, sp.Int8Millis, sp.Speedup, sp.Runs)
		if sp.Speedup < SlowInt8Speedup {
			fmt.Fprintf(w, "models: int8 buys little on this CPU for %s (under %.1fx): float32 may be the better choice, since it keeps the features exact\n",
				source, SlowInt8Speedup)
		}
	}
	if len(r.Sensitivity) > 0 {
		fmt.Fprintf(w, "models: most sensitive layers (feature cosine with that layer float32):\n")
		for _, l := range r.Sensitivity[:min(5, len(r.Sensitivity))] {
			fmt.Fprintf(w, "  %s (%s): %.4f (%+.4f)\n", l.Node, l.Op, l.Cosine, l.Gain)
		}
		if len(cal.Float) > 0 {
			fmt.Fprintf(w, "models: kept float32: %s\n", strings.Join(cal.Float, ", "))
		}
	}
	for _, l := range r.Report.Left {
		fmt.Fprintf(w, "  float: %s (%s): %s\n", l.Node, l.Op, l.Reason)
	}
	if len(r.Skipped) > 0 {
		_, err := fmt.Fprintf(w, "models: %d calibration images could not be read, first: %s: %s\n", len(r.Skipped), r.Skipped[0].Path, r.Skipped[0].Reason)
		return err
	}
	return nil
}
