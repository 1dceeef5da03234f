package backbone

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/internal/atomicfile"
)

// MaxModelBytes is the largest ONNX file headtune reads into memory. A single
// protobuf message cannot exceed 2 GiB, so larger models need external data,
// which ReadModelFile refuses.
const MaxModelBytes = 2<<30 - 1

// ParseModel decodes an ONNX ModelProto. Unknown fields are kept, so
// MarshalModel(ParseModel(b)) preserves everything the schema here does not
// know about (newer IR fields, vendor extensions).
func ParseModel(data []byte) (*onnxpb.ModelProto, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("empty file, expected an ONNX model")
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if m.Graph == nil {
		return nil, fmt.Errorf("not an ONNX model: no graph")
	}
	if m.IrVersion == nil && len(m.OpsetImport) == 0 {
		return nil, fmt.Errorf("not an ONNX model: no IR version and no opset")
	}
	if err := checkNoExternalData(m.Graph); err != nil {
		return nil, err
	}
	return m, nil
}

// checkNoExternalData refuses models whose weights live in side files: the
// graph surgery and export rewrite the model as one self-contained file.
func checkNoExternalData(g *onnxpb.GraphProto) error {
	for _, t := range g.Initializer {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.ExternalData) > 0 {
			return fmt.Errorf("initializer %q uses external data, which headtune does not support: re-save the model as one file (onnx.save(model, path, save_as_external_data=False))", t.GetName())
		}
	}
	return nil
}

// ReadModelFile reads and parses an ONNX file. Errors name the file.
func ReadModelFile(path string) (*onnxpb.ModelProto, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseModel(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// MarshalModel encodes m deterministically: the same model always gives the
// same bytes, so built models are reproducible bit for bit.
func MarshalModel(m *onnxpb.ModelProto) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// WriteModelFile writes m to path atomically: the file is written beside the
// target, synced and renamed, so a crash never leaves a half-written model.
func WriteModelFile(path string, m *onnxpb.ModelProto) error {
	data, err := MarshalModel(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, data)
}

// WriteFileAtomic replaces path with data atomically (see
// internal/atomicfile): readers and crashes see the old file or the new,
// and a killed writer leaves no partial file behind.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data)
}

// ModelHash is the SHA-256 of the model bytes, hex encoded: the content half
// of a backbone's identity.
func ModelHash(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
