// Package ort runs ONNX models through ONNX Runtime: it finds and loads the
// shared library once per process (Init, FindLibrary) and runs batches of
// float32 images through a session (NewSession, Session.Run).
//
// It is the only package of headtune that touches the runtime (through the
// cgo binding github.com/yalue/onnxruntime_go), and it does no graph work:
// callers hand it a serialised model, cut by package backbone where needed.
package ort
