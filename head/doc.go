// Package head trains, evaluates, calibrates and stores classification heads
// on top of frozen backbone features.
//
// A head takes a feature vector of D float32 values (one row of a cached
// feature matrix), optionally standardises it with statistics computed on the
// training split, runs it through a small stack of dense layers (a single
// linear layer for "linear", hidden ReLU layers for "mlp", optionally preceded
// by pretrained dense layers cut from the backbone) and returns class
// probabilities softmax(logits / Temperature).
//
// The package knows nothing of images or ONNX: inputs are row-major float32
// matrices and int32 labels. Feature matrices passed in are never copied as a
// whole and never modified; rows are gathered and standardised in small
// per-worker buffers.
//
// Training is deterministic: for a given Config (Seed included) the weights
// are bit-for-bit identical from run to run on the same machine, whatever the
// number of worker goroutines, because the work is split into fixed blocks and
// partial sums are reduced in a fixed order.
package head
