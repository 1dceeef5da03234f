package featcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Identity says which backbone computed a feature vector. Features are only
// comparable within one Identity, so it is the second half of the cache key
// (the first is the image Key). Its ID changes whenever the model bytes, the
// tensor read out as features, or the preprocessing recipe change.
type Identity struct {
	// ModelHash is the content hash of the ONNX model file (for example
	// backbone.ModelHash: hex SHA-256). Opaque to this package; must be
	// non-empty.
	ModelHash string `json:"model_hash"`
	// FeatureTensor is the name of the graph tensor read out as features.
	FeatureTensor string `json:"feature_tensor"`
	// Preprocess is the JSON of the preprocessing recipe (imaging.Spec).
	// It is canonicalised (object keys sorted, insignificant white space
	// removed, number literals kept verbatim) before hashing, so formatting
	// differences do not change the ID; "1.0" and "1" are different numbers
	// to it.
	Preprocess json.RawMessage `json:"preprocess"`
	// Dim is D, the number of float32 values per feature vector. It is not
	// hashed into the ID (it follows from the model and tensor) but is
	// recorded and checked on every open.
	Dim int `json:"dim"`
}

// MaxDim bounds Identity.Dim: larger feature vectors (over 16 Mi floats,
// 64 MiB per row) are refused as a sign of a corrupt or mistaken identity.
const MaxDim = 1 << 24

// Validate reports whether the identity is complete: a model hash, a tensor
// name, valid JSON for Preprocess, and 0 < Dim <= MaxDim.
func (id Identity) Validate() error {
	switch {
	case strings.TrimSpace(id.ModelHash) == "":
		return errors.New("backbone identity: empty model hash")
	case id.FeatureTensor == "":
		return errors.New("backbone identity: empty feature tensor name")
	case id.Dim <= 0 || id.Dim > MaxDim:
		return fmt.Errorf("backbone identity: feature dimension %d outside 1..%d", id.Dim, MaxDim)
	}
	if _, err := canonicalJSON(id.Preprocess); err != nil {
		return fmt.Errorf("backbone identity: preprocessing spec: %w", err)
	}
	return nil
}

// ID returns the BackboneID: 64 hex digits of SHA-256 over the canonical JSON
// object {"feature_tensor":..., "model_hash":..., "preprocess":...}. If
// Preprocess is not valid JSON (Validate fails) its raw bytes are hashed
// instead, so ID never fails; Open and OpenWriter refuse such identities.
func (id Identity) ID() string {
	pre, err := canonicalJSON(id.Preprocess)
	if err != nil {
		pre = id.Preprocess
	}
	var b bytes.Buffer
	b.WriteString(`{"feature_tensor":`)
	writeJSONString(&b, id.FeatureTensor)
	b.WriteString(`,"model_hash":`)
	writeJSONString(&b, id.ModelHash)
	b.WriteString(`,"preprocess":`)
	b.Write(pre)
	b.WriteString(`}`)
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

// dirName is the folder of one identity under the cache root: the first 16
// hex digits of the ID (64 bits; the full ID in backbone.json catches the
// astronomically unlikely collision).
func (id Identity) dirName() string { return id.ID()[:16] }

// Dir returns the folder that holds the features of id under root.
func Dir(root string, id Identity) string { return filepath.Join(root, id.dirName()) }

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // strings always marshal
	b.Write(enc)
}

// canonicalJSON re-encodes raw with sorted object keys and no white space,
// keeping number literals as written. Empty input canonicalises to null.
func canonicalJSON(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON value")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// manifest is backbone.json: written once, atomically, when the identity's
// folder is created.
type manifest struct {
	Format        string          `json:"format"`
	Version       int             `json:"version"`
	ID            string          `json:"id"`
	ModelHash     string          `json:"model_hash"`
	FeatureTensor string          `json:"feature_tensor"`
	Preprocess    json.RawMessage `json:"preprocess"`
	Dim           int             `json:"dim"`
}

const (
	manifestFormat  = "headtune-featcache"
	manifestVersion = 1
	manifestName    = "backbone.json"
)

func newManifest(id Identity) manifest {
	pre, err := canonicalJSON(id.Preprocess)
	if err != nil {
		pre = id.Preprocess
	}
	return manifest{
		Format: manifestFormat, Version: manifestVersion, ID: id.ID(),
		ModelHash: id.ModelHash, FeatureTensor: id.FeatureTensor,
		Preprocess: pre, Dim: id.Dim,
	}
}

func (m manifest) identity() Identity {
	return Identity{ModelHash: m.ModelHash, FeatureTensor: m.FeatureTensor, Preprocess: m.Preprocess, Dim: m.Dim}
}

// parseManifest decodes and checks backbone.json; path is for messages.
func parseManifest(path string, data []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("read %s: %w", path, err)
	}
	if m.Format != manifestFormat {
		return m, fmt.Errorf("read %s: format %q, want %q", path, m.Format, manifestFormat)
	}
	if m.Version != manifestVersion {
		return m, fmt.Errorf("read %s: version %d not supported (this build reads %d)", path, m.Version, manifestVersion)
	}
	id := m.identity()
	if err := id.Validate(); err != nil {
		return m, fmt.Errorf("read %s: %w", path, err)
	}
	if got := id.ID(); got != m.ID {
		return m, fmt.Errorf("read %s: recorded id %s does not match its fields (%s)", path, m.ID, got)
	}
	return m, nil
}

// readManifest reads dir/backbone.json.
func readManifest(dir string) (manifest, error) {
	path := filepath.Join(dir, manifestName)
	data, err := os.ReadFile(path)
	if err != nil {
		return manifest{}, opError("read", path, err)
	}
	return parseManifest(path, data)
}

// checkManifest confirms that the folder really belongs to id.
func checkManifest(dir string, m manifest, id Identity) error {
	if m.ID != id.ID() {
		return fmt.Errorf("feature cache %s holds backbone %s, not %s (ID prefix collision)", dir, m.ID, id.ID())
	}
	if m.Dim != id.Dim {
		return fmt.Errorf("feature cache %s: backbone %s has feature dimension %d, caller says %d", dir, m.ID[:16], m.Dim, id.Dim)
	}
	return nil
}

func marshalManifest(m manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", manifestName, err)
	}
	return append(b, '\n'), nil
}
