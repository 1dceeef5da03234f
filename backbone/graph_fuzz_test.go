package backbone_test

import (
	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
	"testing"
)

// FuzzParseModel feeds arbitrary bytes through everything that reads an
// untrusted model file: ParseModel, Inspect (which runs ImageInput and
// FindFeatureTensor), FindFeatureTensor with an override, CutAtFeature,
// DenseChain and InitializerFloats. None may panic or hang; errors are fine.
// Seeds: the built test models (also committed in testdata/fuzz) and
// truncations of one.
func FuzzParseModel(f *testing.F) {
	for _, kind := range testmodels.Kinds {
		data, err := backbone.MarshalModel(testmodels.Model(kind, 8))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	vgg, _ := backbone.MarshalModel(testmodels.Model("vgg", 8))
	f.Add(vgg[:len(vgg)/2])
	f.Add([]byte{})
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	{
		m, err := backbone.ParseModel(data)
		if err != nil {
			return
		}
		info, err := backbone.Inspect(m)
		if err != nil {
			return
		}
		for _, c := range info.Candidates {
			if _, err := backbone.FindFeatureTensor(m, c.Tensor); err != nil {
				continue
			}
		}
		if c, err := backbone.FindFeatureTensor(m, ""); err == nil {
			if cut, err := backbone.CutAtFeature(m, c); err == nil {
				if _, err := backbone.MarshalModel(cut); err != nil {
					t.Fatalf("cut model does not encode: %v", err)
				}
			}
			backbone.DenseChainN(m, c.Tensor, 2)
		}
		for _, init := range m.Graph.Initializer {
			if n, err := backbone.TensorElements(init.Dims); err == nil && n < 1<<20 {
				backbone.InitializerFloats(init)
			}
		}
	}
}
