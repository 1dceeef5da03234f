package tfjs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"path/filepath"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/models/tfjs"
)

// What `headtune models pull mobilenetv2-imagenet` does: fetch and verify
// the pinned npm tarball, build the ONNX backbone, install model and
// metadata atomically.
func ExampleBuild() {
	const arch = tfjs.ArchMobileNetV2
	spec, err := tfjs.PackageSpec(arch) // "nsfwjs@4.4.0"
	if err != nil {
		log.Fatal(err)
	}
	tgz, _, err := tfjs.FetchNPM(context.Background(), spec, "/tmp/headtune-npm")
	if err != nil {
		log.Fatal(err)
	}
	model, info, err := tfjs.Build(arch, tgz)
	if err != nil {
		log.Fatal(err)
	}
	dir := "/tmp/headtune-models"
	if err := backbone.WriteModelFile(filepath.Join(dir, arch+".onnx"), model); err != nil {
		log.Fatal(err)
	}
	meta, _ := json.MarshalIndent(info, "", "  ")
	if err := backbone.WriteFileAtomic(filepath.Join(dir, arch+".json"), meta); err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.FeatureTensor, info.FeatureDim, info.Spec().Width)
}
