package featcache

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

// numpySnippet is the reading recipe from the package documentation, plus
// two lines that print what the test compares.
const numpySnippet = `
import csv, hashlib, json, sys, numpy as np
dir = sys.argv[1]
D = json.load(open(f"{dir}/backbone.json"))["dim"]
idx = np.fromfile(f"{dir}/rows.idx", offset=48, dtype=np.dtype([
    ("key", "V32"), ("row", "<u8"), ("row_crc", "<u4"), ("crc", "<u4")]))
n = int(idx["row"].max()) + 1 if len(idx) else 0
X = np.fromfile(f"{dir}/features.f32", dtype="<f4", count=n * D).reshape(n, D)
row_of = {bytes(k).hex(): int(r) for k, r in zip(idx["key"], idx["row"])}
view = list(csv.DictReader(open(f"{dir}/views/train.csv", newline="")))
Xtrain = X[[int(e["row"]) for e in view]]
ytrain = [e["label"] for e in view]
assert all(row_of[e["hash"]] == int(e["row"]) for e in view)
print(hashlib.sha256(Xtrain.astype("<f4").tobytes()).hexdigest(), ",".join(ytrain), Xtrain.shape[0], Xtrain.shape[1])
`

// TestNumpyReadable runs the documented numpy recipe on a cache with a torn
// tail (as a running writer leaves it) and checks it sees exactly what
// LoadMatrix sees. Skips without /usr/bin/python3 and numpy.
func TestNumpyReadable(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		testasset.Skip(t, "needs %s with numpy: %v", py, err)
	}
	const dim = 12
	root, dir := newCache(t, dim, 9)
	entries := []ViewEntry{
		{Path: "x/7.jpg", Label: "seven", Key: itemKey(7)},
		{Path: "x/2.jpg", Label: "two", Key: itemKey(2)},
		{Path: "x/5.jpg", Label: "five", Key: itemKey(5)},
	}
	r, err := Open(root, testIdentity(dim))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range entries {
		entries[i].Row, _ = r.Lookup(entries[i].Key)
	}
	if err := WriteView(dir, "train", entries); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, indexName), make([]byte, 30))
	appendFile(t, filepath.Join(dir, dataName), make([]byte, 4*dim+2))

	script := filepath.Join(t.TempDir(), "read.py")
	if err := os.WriteFile(script, []byte(numpySnippet), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy recipe failed: %v\n%s", err, out)
	}
	X, N, D, err := LoadMatrix(r, entries)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(X)*4)
	putF32s(b, X)
	sum := sha256.Sum256(b)
	want := strings.Join([]string{hex.EncodeToString(sum[:]), "seven,two,five", strconv.Itoa(N), strconv.Itoa(D)}, " ")
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("numpy read %q, want %q", got, want)
	}
}
