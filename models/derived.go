package models

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Derivation says how a derived model was made from an installed one.
type Derivation struct {
	// From is the source model's name, FromSHA256 the SHA-256 of its
	// model.onnx at the time (a later re-pull does not change this model).
	From       string `json:"from"`
	FromSHA256 string `json:"from_sha256"`
	// Kind is what was done: "int8" (static quantization).
	Kind string `json:"kind"`
	// Calibration records the images and settings that set the int8
	// ranges, so a derivation can be repeated and compared.
	Calibration *Calibration `json:"calibration,omitempty"`
}

// Calibration is the record of an int8 calibration.
type Calibration struct {
	Dataset    string  `json:"dataset"` // absolute path of the image folder or CSV
	Images     int     `json:"images"`  // images that calibrated the ranges
	Seed       uint64  `json:"seed"`    // picks the images and the percentile samples
	Method     string  `json:"method"`  // "minmax" or "percentile"
	Percentile float64 `json:"percentile,omitempty"`
	// Float lists the layers kept float32 on request (mixed precision).
	Float []string `json:"float,omitempty"`
	// QuantizedNodes and LeftFloat count the nodes made int8 and the
	// nodes upstream of the features that stayed float.
	QuantizedNodes int `json:"quantized_nodes"`
	LeftFloat      int `json:"left_float"`
	// PoolConvSwaps counts the average pools moved after the 1x1 Conv
	// they feed before quantizing (an exact rewrite; NoRewrite: turned
	// off on request).
	PoolConvSwaps int  `json:"pool_conv_swaps"`
	NoRewrite     bool `json:"no_rewrite,omitempty"`
	// FeatureCosine and MinFeatureCosine compare int8 with float32
	// features on CheckImages images that were not used for calibration
	// (when the dataset had enough): mean and worst cosine similarity.
	FeatureCosine    float64 `json:"feature_cosine"`
	MinFeatureCosine float64 `json:"min_feature_cosine"`
	CheckImages      int     `json:"check_images"`
	// Speed compares the int8 model's inference time with the float32
	// model's on the check images, on the CPU that quantized it; nil in
	// models quantized before it was measured.
	Speed *SpeedCheck `json:"speed,omitempty"`
}

// SpeedCheck is a measured inference speed-up of an int8 model over its
// float32 source: batch 1, one thread, the two models alternating image by
// image on the same decoded tensors. It holds for the CPU and ONNX Runtime
// it was measured on, and is noisy on a busy machine.
type SpeedCheck struct {
	// Speedup is the median over the timed runs of float32 time / int8
	// time for the same image.
	Speedup float64 `json:"speedup"`
	// FloatMillis and Int8Millis are the median times per image.
	FloatMillis float64 `json:"float_ms"`
	Int8Millis  float64 `json:"int8_ms"`
	Runs        int     `json:"runs"` // timed runs of each model
	Threads     int     `json:"threads"`
	ORT         string  `json:"onnxruntime"` // ONNX Runtime version
}

// InstallDerived installs model (serialised ONNX, not retained) under
// meta.Name, which must say where it came from (meta.Derived). An
// installed model of that name is replaced only with replace set; the
// source model is never touched. Like every install it is atomic.
func (s *Store) InstallDerived(ctx context.Context, meta Meta, model []byte, replace bool) (Installed, error) {
	if err := ValidateName(meta.Name); err != nil {
		return Installed{}, err
	}
	if meta.Derived == nil || meta.Derived.From == "" {
		return Installed{}, fmt.Errorf("install %s: a derived model must name its source", meta.Name)
	}
	if meta.Derived.From == meta.Name {
		return Installed{}, fmt.Errorf("install %s: a derived model cannot replace its source; give it another name", meta.Name)
	}
	if !replace {
		if _, err := s.Get(meta.Name); err == nil {
			return Installed{}, fmt.Errorf("install %s: a model named %s is already installed; remove it first or replace it", meta.Name, meta.Name)
		}
	}
	meta.Source = SourceDerived
	f, err := os.CreateTemp(s.dir, ".tmp-"+meta.Name+"-*.onnx")
	if err != nil {
		return Installed{}, fmt.Errorf("install %s: %w", meta.Name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after a successful move
	if _, err := f.Write(model); err != nil {
		f.Close()
		return Installed{}, fmt.Errorf("install %s: write %s: %w", meta.Name, tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Installed{}, fmt.Errorf("install %s: sync %s: %w", meta.Name, tmp, err)
	}
	if err := f.Close(); err != nil {
		return Installed{}, fmt.Errorf("install %s: %w", meta.Name, err)
	}
	return s.installFile(ctx, filepath.Clean(tmp), true, "", meta)
}
