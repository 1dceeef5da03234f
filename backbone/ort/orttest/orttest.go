// Package orttest loads ONNX Runtime for tests, the same way in every
// package: through ort.Init's discovery (HEADTUNE_ORT_LIB,
// ONNXRUNTIME_SHARED_LIBRARY_PATH, the repository's .deps/, the library
// make setup recorded), skipping loudly when it cannot, and failing instead
// under CI=true (internal/testasset).
package orttest

import (
	"testing"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/internal/testasset"
)

// Init loads ONNX Runtime once per process (ort.Init is a no-op after the
// first success) or skips t, naming the reason.
func Init(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime unavailable: %v", err)
	}
}
