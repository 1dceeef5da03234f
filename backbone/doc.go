// Package backbone works on ONNX models as data: it reads and writes them
// (model.go), indexes a graph and infers tensor shapes without running it
// (graph.go, shapes.go), reports what a model is (inspect.go), finds the
// feature tensor of a classifier and the dense layers before it
// (feature.go), cuts a model at that tensor and appends pooling
// (surgery.go), and builds or extends graphs node by node (builder.go).
//
// It is pure Go with no cgo: running a model is backbone/ort's job, and the
// tiny models tests build are internal/testmodels'. Nothing here knows of
// images, heads or training; pretrained dense layers it decodes are
// dense.Layer values, the type head trains.
package backbone
