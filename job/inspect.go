package job

import (
	"context"
	"fmt"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/pipeline"
)

// InspectOptions configure Inspect.
type InspectOptions struct {
	Env
	// Model is an .onnx file or an installed model's name.
	Model string
}

// InspectResult describes a model.
type InspectResult struct {
	Path string              `json:"path"`
	Info *backbone.ModelInfo `json:"info"`
	// Export is the headtune metadata of a model made by Export (nil for
	// any other model).
	Export *export.Meta `json:"export,omitempty"`
}

// Inspect reads a model and reports its inputs, outputs, opsets, size and
// the feature tensor headtune would use: for an installed model the one it
// was registered with (what extract uses), for a headtune export the
// backbone's feature vector the head reads, else the detected one.
func Inspect(ctx context.Context, opt InspectOptions) (*InspectResult, error) {
	path := opt.Model
	registered := ""
	if !pipeline.IsModelFile(path) {
		store, err := opt.Store()
		if err != nil {
			return nil, err
		}
		inst, err := store.Get(path)
		if err != nil {
			return nil, unknownModel(path, err)
		}
		path = inst.ModelPath()
		registered = inst.Meta.FeatureTensor
	}
	m, err := backbone.ReadModelFile(path)
	if err != nil {
		return nil, err
	}
	info, err := backbone.Inspect(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if registered != "" {
		// An installed model is cut where it was registered, as extract
		// cuts it.
		info.Feature, info.FeatureError = nil, ""
		if fc, err := backbone.FindFeatureTensor(m, registered); err != nil {
			info.FeatureError = err.Error()
		} else {
			info.Feature = fc
		}
	}
	res := &InspectResult{Path: path, Info: info}
	if meta, err := export.ReadMetadata(m); err == nil {
		res.Export = meta
		if fc, err := exportFeature(m); err == nil {
			info.Feature, info.FeatureError = fc, ""
		}
	}
	return res, nil
}

// exportFeature finds the feature vector inside an export: the tensor the
// first head layer reads, which Build names export.OutputFeatures.
func exportFeature(m *onnxpb.ModelProto) (*backbone.FeatureChoice, error) {
	return backbone.FindFeatureTensor(m, export.OutputFeatures)
}
