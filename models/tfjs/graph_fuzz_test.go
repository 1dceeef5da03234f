package tfjs

import (
	"encoding/json"
	"testing"
)

// FuzzConvertGraph: any model.json, with a few weights of fixed shapes,
// converts or fails with an error; it never panics.
func FuzzConvertGraph(f *testing.F) {
	f.Add(`{"format":"graph-model","modelTopology":{"node":[{"name":"x","op":"Placeholder","attr":{"shape":{"shape":{"dim":[{"size":"-1"},{"size":"8"},{"size":"8"},{"size":"3"}]}}}},{"name":"c","op":"Conv2D","input":["x","w"],"attr":{"strides":{"list":{"i":["1","2","2","1"]}},"padding":{"s":"U0FNRQ=="}}},{"name":"m","op":"Mean","input":["c","axes"],"attr":{}}]}}`, "m")
	f.Add(`{"modelTopology":{"node":[{"name":"x","op":"Placeholder","attr":{"shape":{"shape":{"dim":[{"size":"1"},{"size":"4"},{"size":"4"},{"size":"4"}]}}}},{"name":"p","op":"MaxPool","input":["x"],"attr":{"ksize":{"list":{"i":["1","0","3","1"]}},"strides":{"list":{"i":["1","0","1","1"]}},"padding":{"s":"VkFMSUQ="}}}]}}`, "p")
	f.Add(`{"modelTopology":{"node":[{"name":"x","op":"Placeholder","attr":{"shape":{"shape":{"dim":[{"size":"1"},{"size":"4"},{"size":"4"},{"size":"3"}]}}}},{"name":"r","op":"Reshape","input":["x","axes"]},{"name":"s","op":"Squeeze","input":["r"],"attr":{"squeeze_dims":{"list":{"i":["7"]}}}}]}}`, "s")
	w := WeightsFromTensors(map[string]*Tensor{
		"w":    {Shape: []int{3, 3, 3, 4}, Data: make([]float32, 108)},
		"axes": {Shape: []int{2}, Data: []float32{1, 2}},
		"b":    {Shape: []int{4}, Data: make([]float32, 4)},
	})
	f.Fuzz(func(t *testing.T, topo, out string) {
		var gm GraphModelJSON
		if json.Unmarshal([]byte(topo), &gm) != nil || len(gm.ModelTopology.Node) > 64 {
			return
		}
		_, _ = ConvertGraph(&gm, w, GraphOptions{InputName: "in", GraphName: "g", Outputs: []GraphOutput{{TF: out, Name: "o"}, {TF: out, Name: "p", Pool: true}}})
	})
}
