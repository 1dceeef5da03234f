package pipeline

import (
	"context"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/source"
)

// ExtractLocation is Extract for a dataset named by an object storage URL
// (a prefix with class folders, or a CSV manifest object): the dataset is
// listed once, and each image is streamed from the store (retried,
// checked against the listing) by the workers that decode it, so memory
// stays bounded by the images in flight. Local paths work too. View paths
// are the keys relative to the dataset's location.
func ExtractLocation(ctx context.Context, bb *Backbone, url string, opt ExtractOptions) (*ExtractSummary, error) {
	ds, err := source.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	return ExtractSource(ctx, bb, ds, opt)
}

// ExtractSource is ExtractLocation for a dataset already listed; the view
// is named after ds.URL.
func ExtractSource(ctx context.Context, bb *Backbone, ds *source.Dataset, opt ExtractOptions) (*ExtractSummary, error) {
	im := &imaging.Dataset{Root: ds.URL, Classes: ds.Classes, Ignored: ds.Ignored}
	im.Samples = make([]imaging.Sample, len(ds.Samples))
	for i, s := range ds.Samples {
		im.Samples[i] = imaging.Sample{Path: s.Key, Label: s.Label, Split: s.Split}
	}
	opt.Read = func(ctx context.Context, i int, buf []byte) ([]byte, error) {
		return source.Read(ctx, ds.Loc, ds.Samples[i], buf, MaxFileBytes)
	}
	sum, err := Extract(ctx, bb, im, opt)
	if sum != nil {
		sum.Retries = ds.Loc.Stats().Retries.Load()
	}
	return sum, err
}

// IsLocation reports whether a dataset argument names object storage
// rather than a local path.
func IsLocation(arg string) bool { return objstore.IsURL(arg) }
