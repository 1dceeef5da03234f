package models

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestInstallDerived: a derived model installs atomically with its
// derivation recorded, and the refusals name the problem.
func TestInstallDerived(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	meta := Meta{Name: "m-int8", Task: TaskFeatureExtractor, Preprocess: json.RawMessage(`{"width":8}`),
		Derived: &Derivation{From: "m", FromSHA256: "abc", Kind: "int8", Calibration: &Calibration{Images: 3, Seed: 2, Method: "minmax"}}}
	in, err := s.InstallDerived(ctx, meta, []byte("model bytes"), false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("m-int8")
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta.Source != SourceDerived || got.Meta.Derived.From != "m" || got.Meta.Derived.Calibration.Images != 3 || got.Meta.SHA256 == "" {
		t.Errorf("installed meta %+v", got.Meta)
	}
	if b, _ := os.ReadFile(in.ModelPath()); string(b) != "model bytes" {
		t.Errorf("model file holds %q", b)
	}
	if err := s.Verify("m-int8"); err != nil {
		t.Error(err)
	}
	if _, err := s.InstallDerived(ctx, meta, []byte("x"), false); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Errorf("overwrite without replace: %v", err)
	}
	if _, err := s.InstallDerived(ctx, meta, []byte("new"), true); err != nil {
		t.Errorf("replace: %v", err)
	}
	bad := meta
	bad.Derived = nil
	if _, err := s.InstallDerived(ctx, bad, []byte("x"), true); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("no derivation: %v", err)
	}
	self := meta
	self.Derived = &Derivation{From: "m-int8", Kind: "int8"}
	if _, err := s.InstallDerived(ctx, self, []byte("x"), true); err == nil || !strings.Contains(err.Error(), "cannot replace its source") {
		t.Errorf("derived over its source: %v", err)
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}
