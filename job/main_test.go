package job_test

import (
	"flag"
	"os"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/internal/testasset"
)

// TestMain runs the examples only where ONNX Runtime can be loaded: the
// examples extract features, and an Example cannot skip. Without it they
// are left out with a SKIP line (and the run fails in CI).
func TestMain(m *testing.M) {
	flag.Parse()
	if _, err := ort.Init(""); err != nil {
		if !testasset.Missing("the job examples need ONNX Runtime (%v); run `make setup`", err) {
			os.Exit(1)
		}
		flag.Set("test.run", "^Test")
	}
	code := m.Run()
	ort.Shutdown()
	os.Exit(code)
}
