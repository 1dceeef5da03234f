package job

import (
	"context"

	"github.com/headtune/headtune/pipeline"
)

// QuantizeOptions configure ModelsQuantize: the shared Env (models folder,
// ONNX Runtime, threads from Env.Session.Threads) and what
// pipeline.QuantizeOptions says, whose Store and Threads are filled from
// the Env.
type QuantizeOptions struct {
	Env
	pipeline.QuantizeOptions
}

// ModelsQuantize makes a calibrated static int8 copy of an installed
// backbone and installs it as a model derived from it
// (`headtune models quantize`); see pipeline.Quantize.
func ModelsQuantize(ctx context.Context, opt QuantizeOptions) (*pipeline.QuantizeResult, error) {
	if err := opt.InitRuntime(); err != nil {
		return nil, err
	}
	store, err := opt.Env.Store()
	if err != nil {
		return nil, err
	}
	q := opt.QuantizeOptions
	q.Store = store
	if q.Threads == 0 {
		q.Threads = opt.Session.Threads
	}
	return pipeline.Quantize(ctx, q)
}
