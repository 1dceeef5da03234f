package head

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"
)

// TestCalibrationAndConformalPersist: the head file keeps what the
// temperature was fitted on and the conformal scores, and a head written
// without them (older files) still loads.
func TestCalibrationAndConformalPersist(t *testing.T) {
	all := mixture(120, 6, 3, 1, 3)
	res, err := Fit(context.Background(), all, Data{}, DefaultConfig(KindLinear), FitOptions{CVFolds: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Model
	path := filepath.Join(t.TempDir(), "small.head")
	if err := Save(path, m); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Calibration == nil || *got.Calibration != *m.Calibration || got.Conformal == nil ||
		!slices.Equal(got.Conformal.Scores, m.Conformal.Scores) || got.Conformal.Source != CalibCV || got.Conformal.Folds != 4 {
		t.Fatalf("calibration %+v / %+v, conformal %+v", got.Calibration, m.Calibration, got.Conformal)
	}
	old := *m
	old.Calibration, old.Conformal = nil, nil
	b, err := Marshal(&old)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"conformal"`)) || bytes.Contains(b, []byte(`"calibration"`)) {
		t.Error("absent fields are written")
	}
	if binary.LittleEndian.Uint32(b[8:]) != PlainFormatVersion {
		t.Error("format version changed")
	}
	if o, err := Unmarshal(b); err != nil || o.Conformal != nil {
		t.Fatalf("head without conformal scores: %v", err)
	}
}
