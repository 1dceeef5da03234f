// Package export turns a cut backbone and a trained head into one
// self-contained ONNX model, and reads back the metadata such a model
// carries.
//
// The exported graph is
//
//	image input ─▶ backbone (cut at its feature tensor) ─▶ features [N, D]
//	  ─▶ (features - mean) / std        (when the head standardises)
//	  ─▶ Gemm [─▶ Relu] ... Gemm        (head.Model.Layers, tuned layers first)
//	  ─▶ ÷ temperature                  (omitted when it is 1)
//	  ─▶ Softmax(axis=1) ─▶ probabilities [N, classes]
//
// with, optionally, features [N, D] as a second output and, with
// Options.WithPreprocessing, a new input "pixels" that takes raw 0..255
// pixel values and applies the spec's (p*scale - mean[c]) / std[c] in the
// graph. Geometry (decoding, resize, crop, letterbox) is never in the
// graph: the caller resizes to the spec's Width x Height first.
//
// Every export goes through one consumer-neutral pass (portable.go): a
// ReLU6 graph is written at opset 10, where Clip has attribute bounds, and
// per-channel constants take the shape OpenCV 4.6 reads, with ONNX
// Runtime's results and kernels unchanged. Limits names the consumers that
// still cannot run an export (OpenCV and Options.FP16). Options.FP16 turns
// the graph's float32 tensors into float16 with float32 input and outputs.
//
// Everything a consumer needs to reproduce the input exactly is stored in
// the model's metadata_props under "headtune.*" keys (see the Key*
// constants), which ReadMetadata parses back.
//
// Numerics: the standardisation is kept as explicit Sub and Div nodes
// rather than folded into the first Gemm. Folding (W' = W/std,
// b' = b - W'·mean) turns (x-mean)/std into W'x - W'mean, a difference of
// two large float32 sums whenever |mean| >> std, and loses the 1e-5 parity
// with `headtune predict` on such features (TestLargeOffsetFeatures:
// folded 1.6e-4, explicit 2e-7); the two element-wise nodes cost
// D operations per image, nothing next to the backbone. The same reasoning
// keeps the temperature as a Div before the Softmax. The arithmetic thus
// follows head.Model exactly: only the Gemm summation order (ONNX Runtime's
// MLAS kernels versus gonum's dot) differs.
package export
