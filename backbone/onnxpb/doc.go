// Package onnxpb holds Go types generated from the ONNX schema (onnx.proto,
// IR version 8 as shipped by Debian's libonnx-dev). proto2 semantics keep
// unknown fields, so a model read and written back loses nothing.
//
// Regenerate with `go generate ./backbone/onnxpb` (needs protoc and
// protoc-gen-go v1.36.12); the generated file is committed so building
// headtune never needs protoc.
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=github.com/headtune/headtune/backbone/onnxpb onnx.proto
