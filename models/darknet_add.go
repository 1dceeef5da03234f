package models

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/models/darknet"
)

// DarknetOptions describe a Darknet import for Store.AddDarknet.
type DarknetOptions struct {
	// Width and Height replace the cfg's input size when > 0 (any
	// multiple of 32 for the YOLO detectors, which are fully
	// convolutional).
	Width, Height int
	// FeatureTensor names the features ("layer_N" is Darknet layer N's
	// output); "" lets the backbone choose: for detectors the deepest
	// backbone map before the heads, for classifiers the classifier's
	// input.
	FeatureTensor string
	License       string
	Description   string
	Classes       []string
	// Replace allows overwriting an installed model of the same name.
	Replace bool
}

// AddDarknet imports a Darknet network (cfg and weights, see package
// darknet) as an ONNX backbone and installs it under name, with the
// preprocessing Darknet applies (RGB 0..1, letterbox for detectors,
// stretch for classifiers) as its recipe. The cfg and weights files are
// only read; every error names the file at fault.
func (s *Store) AddDarknet(ctx context.Context, name, cfgPath, weightsPath string, opts DarknetOptions) (Installed, error) {
	if err := ValidateName(name); err != nil {
		return Installed{}, err
	}
	if !opts.Replace {
		if _, err := s.Get(name); err == nil {
			return Installed{}, fmt.Errorf("add %s: a model named %s is already installed; remove it first or replace it", cfgPath, name)
		}
	}
	m, info, err := darknet.BuildFiles(cfgPath, weightsPath, darknet.Options{Width: opts.Width, Height: opts.Height})
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", cfgPath, err)
	}
	if err := ctx.Err(); err != nil {
		return Installed{}, err
	}
	fc, err := backbone.FindFeatureTensor(m, opts.FeatureTensor)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", cfgPath, err)
	}
	spec := info.Spec()
	if err := spec.Validate(); err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", cfgPath, err)
	}
	data, err := backbone.MarshalModel(m)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", cfgPath, err)
	}
	task := guessTask(m, fc)
	if len(info.Heads) > 0 {
		task = TaskObjectDetector
	}
	desc := opts.Description
	if desc == "" {
		kind := "classifier"
		if len(info.Heads) > 0 {
			kind = strings.Join(info.Heads, "+") + " detector, heads cut"
		} else if task == TaskFeatureExtractor {
			kind = "network"
		}
		desc = fmt.Sprintf("Darknet %s (%s), %dx%d, weights v%d.%d", filepath.Base(cfgPath), kind, info.Width, info.Height, info.Header.Major, info.Header.Minor)
	}
	cfgAbs, _ := filepath.Abs(cfgPath)
	wAbs, _ := filepath.Abs(weightsPath)
	meta := Meta{
		Name: name, Task: task, Source: SourceDarknet,
		Provenance: cfgAbs + " + " + wAbs,
		License:    opts.License, Description: desc,
		Preprocess: json.RawMessage(spec.Canonical()),
		InputName:  info.Input, FeatureTensor: fc.Tensor,
		Classes: append([]string(nil), opts.Classes...),
	}
	if fc.Dim > 0 {
		meta.FeatureDim = int(fc.Dim)
	}
	return s.installBytes(ctx, data, meta)
}
