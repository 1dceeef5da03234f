package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `{"Action":"start","Package":"p/a"}
{"Action":"run","Package":"p/a","Test":"TestOK"}
{"Action":"output","Package":"p/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"p/a","Test":"TestOK","Elapsed":0.01}
{"Action":"run","Package":"p/a","Test":"TestNeedsORT"}
{"Action":"output","Package":"p/a","Test":"TestNeedsORT","Output":"=== RUN   TestNeedsORT\n"}
{"Action":"output","Package":"p/a","Test":"TestNeedsORT","Output":"    a_test.go:9: SKIP (asset missing): ONNX Runtime not found\n"}
{"Action":"output","Package":"p/a","Test":"TestNeedsORT","Output":"--- SKIP: TestNeedsORT (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestNeedsORT","Elapsed":0}
{"Action":"pass","Package":"p/a","Elapsed":0.5}
{"Action":"output","Package":"p/b","Output":"SKIP (asset missing): the job examples need ONNX Runtime\n"}
{"Action":"run","Package":"p/b","Test":"TestBad"}
{"Action":"output","Package":"p/b","Test":"TestBad","Output":"    b_test.go:3: got 2, want 3\n"}
{"Action":"fail","Package":"p/b","Test":"TestBad","Elapsed":0}
{"Action":"fail","Package":"p/b","Elapsed":0.2}
`

func TestReport(t *testing.T) {
	var out bytes.Buffer
	skips, failed, err := report(strings.NewReader(sample), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failed test was not reported as a failure")
	}
	if len(skips) != 2 || skips[0].Test != "TestNeedsORT" || !strings.Contains(skips[0].Reason, "ONNX Runtime not found") ||
		strings.Contains(skips[0].Reason, "--- SKIP") || skips[1].Package != "p/b" || skips[1].Test != "" {
		t.Errorf("skips: %+v", skips)
	}
	for _, want := range []string{"ok  \tp/a", "got 2, want 3", "FAIL\tp/b"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "=== RUN   TestOK") {
		t.Errorf("a passing test's output was printed:\n%s", out.String())
	}
}
