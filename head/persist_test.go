package head

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/convtail"
)

func trainedMLP(t testing.TB) (*Model, Data) {
	t.Helper()
	all := mixture(600, 10, 3, 0.8, 31)
	tr, va, _, _ := StratifiedSplit(all.Y, 0.2, 0, 1)
	cfg := DefaultConfig(KindMLP)
	cfg.Hidden, cfg.Epochs = []int{12}, 3
	cfg.Classes = []string{"ankle boot", "bag", "coat"}
	m, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Backbone = BackboneRef{ID: "mobilenet_v2_block10", ModelHash: "sha256:6096f1fe", FeatureTensor: "gap_block_10_depthwise_relu",
		Preprocess: json.RawMessage(`{"width": 224, "height": 224, "scale": 0.003921569}`)}
	return m, all
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m, all := trainedMLP(t)
	m.Metrics["nan_is_dropped"] = math.NaN()
	path := filepath.Join(t.TempDir(), "fashion.head")
	if err := Save(path, m); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameWeights(m, got) || got.Temperature != m.Temperature || got.Kind != m.Kind || got.Tuned != m.Tuned {
		t.Fatal("weights, temperature or kind changed in the round trip")
	}
	if strings.Join(got.Classes, "|") != strings.Join(m.Classes, "|") || got.Train.Seed != m.Train.Seed ||
		got.Train.Config.Optimizer != m.Train.Config.Optimizer || got.Backbone.ModelHash != m.Backbone.ModelHash {
		t.Errorf("metadata changed: %+v vs %+v", got.Train, m.Train)
	}
	if _, ok := got.Metrics["nan_is_dropped"]; ok || got.Metrics["val_accuracy"] != m.Metrics["val_accuracy"] {
		t.Errorf("metrics %v", got.Metrics)
	}
	p1, p2 := make([]float32, all.N*3), make([]float32, all.N*3)
	m.PredictBatch(all.X, all.N, p1)
	got.PredictBatch(all.X, all.N, p2)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatalf("prediction %d differs after reload: %g vs %g", i, p1[i], p2[i])
		}
	}
	// Saving again gives the same bytes; no temporary files are left.
	b1, _ := os.ReadFile(path)
	if err := Save(path, got); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(path)
	if string(b1) != string(b2) {
		t.Error("re-saving a loaded head changed the file")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("%d files in the directory, want only the head", len(ents))
	}
}

func TestLoadDamagedFile(t *testing.T) {
	m, _ := trainedMLP(t)
	good, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := append([]byte(nil), good...); b[i] ^= 0x10; return b }
	resum := func(b []byte) []byte {
		s := sha256.Sum256(b[:len(b)-32])
		copy(b[len(b)-32:], s[:])
		return b
	}
	future := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(future[8:], FormatVersion+1)
	hl := int(binary.LittleEndian.Uint32(good[12:]))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"text", []byte("this is not a head file, it is a text file that is long enough........"), "bad magic"},
		{"truncated-header", good[:40], "truncated"},
		{"truncated-payload", good[:len(good)-100], "truncated"},
		{"truncated-checksum", good[:len(good)-1], "truncated"},
		{"extra-bytes", append(append([]byte(nil), good...), 0), "truncated"},
		{"flipped-header", flip(30), "checksum"},
		{"flipped-payload", flip(prefixLen + hl + 5), "checksum"},
		{"flipped-checksum", flip(len(good) - 3), "checksum"},
		{"future-version", future, "version"},
		{"nan-weight", resum(func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[prefixLen+hl+len(m.Mean)*8:], math.Float32bits(float32(math.NaN())))
			return b
		}()), "non-finite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.head")
			os.WriteFile(path, tc.data, 0o644)
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming %s and containing %q", err, path, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.head")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestSaveKeepsOldFileOnError(t *testing.T) {
	m, _ := trainedMLP(t)
	path := filepath.Join(t.TempDir(), "h.head")
	if err := Save(path, m); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	bad := *m
	bad.Temperature = 0
	if err := Save(path, &bad); err == nil {
		t.Fatal("invalid model saved")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("failed save changed the existing file")
	}
}

func TestCheckBackbone(t *testing.T) {
	m, _ := trainedMLP(t)
	same := m.Backbone
	same.Preprocess = json.RawMessage(`{"scale":0.003921569,"height":224,"width":224}`) // reordered keys
	same.ID = "renamed"
	if err := m.CheckBackbone(same); err != nil {
		t.Errorf("same backbone refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*BackboneRef)
		want []string
	}{
		{"hash", func(r *BackboneRef) { r.ModelHash = "sha256:c7f08ed4"; r.ID = "inception_v3_mixed5" }, []string{"sha256:6096f1fe", "sha256:c7f08ed4", "mobilenet_v2_block10", "inception_v3_mixed5"}},
		{"tensor", func(r *BackboneRef) { r.FeatureTensor = "logits" }, []string{"gap_block_10_depthwise_relu", "logits"}},
		{"preprocess", func(r *BackboneRef) { r.Preprocess = json.RawMessage(`{"width":299,"height":299,"scale":0.003921569}`) }, []string{"224", "299"}},
		{"tune-cut", func(r *BackboneRef) { r.TuneCut = "fc6_in" }, []string{"fc6_in", "(none)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := m.Backbone
			tc.mod(&r)
			err := m.CheckBackbone(r)
			if err == nil {
				t.Fatal("mismatch accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	m, _ := trainedMLP(f)
	good, err := Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("HTHEAD\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// As given (checksum almost always wrong), then with a valid
		// checksum so that the header and tensor checks are exercised.
		for pass := 0; pass < 2; pass++ {
			m, err := Unmarshal(b)
			if err == nil {
				if err := m.Validate(); err != nil {
					t.Fatalf("Unmarshal accepted an invalid model: %v", err)
				}
				x := make([]float32, m.Dim())
				if err := m.Predict(x, make([]float32, m.NumClasses()), nil); err != nil {
					t.Fatal(err)
				}
			}
			if len(b) < prefixLen+32 {
				return
			}
			b = append([]byte(nil), b...)
			s := sha256.Sum256(b[:len(b)-32])
			copy(b[len(b)-32:], s[:])
		}
	})
}

// TestConvTailRoundTrip: a head with tuned convolutions keeps their
// geometry and weights bit for bit, is written as format 2 (older builds
// refuse it instead of dropping the tail), and ConvFeatures pools the
// tail's output; a tail that does not give Dim() channels is invalid.
func TestConvTailRoundTrip(t *testing.T) {
	m, _ := trainedMLP(t) // Dim() 10
	l0 := convtail.Layer{InC: 2, InH: 3, InW: 3, OutC: 4, K: 3, Stride: 1, Pad: 1, Groups: 2, Act: convtail.ActLeaky}
	l1 := convtail.Layer{InC: 4, InH: 3, InW: 3, OutC: 10, K: 1, Stride: 1, Groups: 1, Act: convtail.ActReLU}
	for _, l := range []*convtail.Layer{&l0, &l1} {
		l.W = make([]float32, l.OutC*l.InC/l.Groups*l.K*l.K)
		l.B = make([]float32, l.OutC)
		for i := range l.W {
			l.W[i] = float32(math.Sin(float64(i)))
		}
		for i := range l.B {
			l.B[i] = 0.1 * float32(i)
		}
	}
	m.ConvTail = []ConvLayer{{Conv: "conv_a", BatchNorm: "bn_a", Layer: l0}, {Conv: "conv_b", Layer: l1}}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion || v == PlainFormatVersion {
		t.Fatalf("head with a conv tail written as format %d", v)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ConvTail) != 2 || got.ConvTail[0].BatchNorm != "bn_a" || got.ConvTail[1].Act != convtail.ActReLU || got.ConvTail[0].Groups != 2 {
		t.Fatalf("conv tail read back as %+v", got.ConvTail)
	}
	for i, l := range m.ConvTail {
		g := got.ConvTail[i]
		if len(g.W) != len(l.W) || g.W[len(g.W)-1] != l.W[len(l.W)-1] || g.B[len(g.B)-1] != l.B[len(l.B)-1] {
			t.Fatalf("conv tail layer %d weights differ after the round trip", i)
		}
	}
	maps := make([]float32, 2*got.ConvInputLen())
	for i := range maps {
		maps[i] = float32(i%7) - 3
	}
	f, err := got.ConvFeatures(maps, 2, 1)
	if err != nil || len(f) != 2*m.Dim() {
		t.Fatalf("ConvFeatures: %d values, %v", len(f), err)
	}
	bad := *got
	bad.ConvTail = bad.ConvTail[:1]
	if err := bad.Validate(); err == nil {
		t.Fatal("a conv tail giving 4 channels to a 10-feature head was accepted")
	}
}
