package models

import (
	"fmt"
	"io"

	"github.com/headtune/headtune/internal/bytesize"
)

// WritePulled writes the line `headtune models pull` shows for a model
// obtained under name: where it went, its size and its provenance.
func (in Installed) WritePulled(w io.Writer, name string) error {
	_, err := fmt.Fprintf(w, "models: %s installed at %s (%s, %s)\n", name, in.ModelPath(), bytesize.Format(in.Meta.Size), in.Meta.Provenance)
	return err
}

// WriteAdded writes the line `headtune models add` shows for a registered
// ONNX file: its name, path, feature tensor and width, and how many class
// names it carries (when any).
func (in Installed) WriteAdded(w io.Writer) error {
	classes := ""
	if n := len(in.Meta.Classes); n > 0 {
		classes = fmt.Sprintf(", %d class names", n)
	}
	_, err := fmt.Fprintf(w, "models: added %s (%s, feature tensor %s, %d-d%s)\n", in.Meta.Name, in.ModelPath(), in.Meta.FeatureTensor, in.Meta.FeatureDim, classes)
	return err
}

// WriteImported writes the line `headtune models add --darknet` shows for
// an imported Darknet network.
func (in Installed) WriteImported(w io.Writer) error {
	_, err := fmt.Fprintf(w, "models: imported %s (%s, %s, feature tensor %s, %d-d)\n", in.Meta.Name, in.ModelPath(), in.Meta.Task, in.Meta.FeatureTensor, in.Meta.FeatureDim)
	return err
}
