package faces

import (
	"github.com/headtune/headtune/backbone/ort/orttest"
	"sync"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
)

// Assets: BlazeFace from its pinned npm tarball, face-api's demo photos
// from theirs, ONNX Runtime from .deps. A missing asset skips the test with
// the reason, except under CI=true, where it fails: CI provides them all.

var (
	assetMu   sync.Mutex
	blazeONNX []byte
)

// blazeFace returns the ONNX bytes of BlazeFace back 256.
func blazeFace(t testing.TB) []byte {
	t.Helper()
	assetMu.Lock()
	defer assetMu.Unlock()
	if blazeONNX != nil {
		return blazeONNX
	}
	spec, err := tfjs.PackageSpec(tfjs.ArchBlazeFace)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := tfjs.BuildShipped(tfjs.ArchBlazeFace, testnpm.Tarball(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	blazeONNX = b
	return b
}

var (
	detMu  sync.Mutex
	shared *Detector
)

// detector returns one BlazeFace detector shared by the tests.
func detector(t testing.TB) *Detector {
	t.Helper()
	orttest.Init(t)
	model := blazeFace(t)
	detMu.Lock()
	defer detMu.Unlock()
	if shared == nil {
		d, err := NewDetector(model, ort.SessionOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		shared = d
	}
	return shared
}

func decodeBytes(t testing.TB, name string, b []byte) *imaging.RGB {
	t.Helper()
	img, err := imaging.Decode(b, imaging.DecodeOptions{})
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return img
}
