package job

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/models"
)

// AddDarknetOptions say what ModelsAddDarknet imports.
type AddDarknetOptions struct {
	Env
	// Cfg and Weights are the Darknet files; Name the name to use the
	// model by (default: the cfg's base name).
	Cfg, Weights, Name string
	models.DarknetOptions
}

// ModelsAddDarknet imports a Darknet network (cfg + weights) as an ONNX
// backbone and installs it (models.Store.AddDarknet).
func ModelsAddDarknet(ctx context.Context, opt AddDarknetOptions) (*models.Installed, error) {
	name := opt.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(opt.Cfg), filepath.Ext(opt.Cfg))
	}
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	inst, err := store.AddDarknet(ctx, name, opt.Cfg, opt.Weights, opt.DarknetOptions)
	if err != nil {
		return nil, err
	}
	return &inst, nil
}
