package models

import (
	"bufio"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models/darknet"
)

// smallYOLO is a two-head detector in YOLOv3's shape: a trunk, a 4x4 head
// and an upsampled 8x8 head.
const smallYOLO = `[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=1,1,2,2,3,3
classes=1
num=3

[route]
layers=-3

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers=-1,-7

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=1,1,2,2,3,3
classes=1
num=3
`

// writeDarknet writes cfg text and weights (header 0.2.0, values cycling
// through small numbers, variances positive) and returns both paths.
func writeDarknet(t *testing.T, cfgText string, truncate int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "small-yolo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := darknet.ParseConfig(strings.NewReader(cfgText), "small-yolo.cfg")
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := darknet.Layout(cfg, darknet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wPath := filepath.Join(dir, "small-yolo.weights")
	f, err := os.Create(wPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := darknet.WriteHeader(w, darknet.Header{Major: 0, Minor: 2, Seen: 1000}); err != nil {
		t.Fatal(err)
	}
	k := 0
	var total int
	for _, b := range blobs {
		total += b.N
	}
	for _, b := range blobs {
		for i := 0; i < b.N && total > truncate; i++ {
			v := float32(k%7-3) / 10
			if b.Kind == "variance" || b.Kind == "scale" {
				v = 1 + float32(k%3)/10
			}
			binary.Write(w, binary.LittleEndian, math.Float32bits(v))
			k++
			total--
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return cfgPath, wPath
}

func TestAddDarknet(t *testing.T) {
	s := newStore(t)
	cfgPath, wPath := writeDarknet(t, smallYOLO, 0)
	inst, err := s.AddDarknet(context.Background(), "small-yolo", cfgPath, wPath, DarknetOptions{Width: 96, Height: 96})
	if err != nil {
		t.Fatal(err)
	}
	m := inst.Meta
	if m.Task != TaskObjectDetector || m.Source != SourceDarknet || m.InputName != "data" {
		t.Errorf("meta %+v: want a darknet object detector fed through data", m)
	}
	// The trunk at the smallest size that feeds both heads: layer 3.
	if m.FeatureTensor != "layer_3" || m.FeatureDim != 32 {
		t.Errorf("feature %s (%d-d), want layer_3 (32-d)", m.FeatureTensor, m.FeatureDim)
	}
	spec, err := m.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Width != 96 || spec.Height != 96 || spec.Resize != imaging.ResizeLetterbox || spec.Scale != 1.0/255 || spec.Layout != "NCHW" {
		t.Errorf("spec %+v: want 96x96 letterbox, 0..1, NCHW", spec)
	}
	model, err := backbone.ReadModelFile(inst.ModelPath())
	if err != nil {
		t.Fatal(err)
	}
	fc, err := backbone.FindFeatureTensor(model, "")
	if err != nil || fc.Tensor != "layer_3" || fc.Rule != backbone.RuleDetector {
		t.Errorf("installed model: feature %+v, %v", fc, err)
	}
	if err := s.Verify("small-yolo"); err != nil {
		t.Error(err)
	}

	// Truncated weights: one line naming the weights file; nothing
	// installed.
	cfg2, w2 := writeDarknet(t, smallYOLO, 5)
	_, err = s.AddDarknet(context.Background(), "broken", cfg2, w2, DarknetOptions{})
	if err == nil || !strings.Contains(err.Error(), w2+": file ends early") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("truncated weights: %v", err)
	}
	if _, err := s.Get("broken"); err == nil {
		t.Fatal("a failed import installed a model")
	}
	// The same name again needs Replace.
	if _, err := s.AddDarknet(context.Background(), "small-yolo", cfgPath, wPath, DarknetOptions{}); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Fatalf("second add: %v", err)
	}
}
