package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
)

// The tests in this file pin the behaviour issue 12 §3 asked for, each
// found when the tool was tried as a new user would.

// trained returns a CLI with a generated 3-class dataset (ds/), a resnet
// backbone (resnet.onnx), its features extracted and a head trained
// (h.head).
func trained(t *testing.T, trainArgs ...string) (*cli, string, string) {
	t.Helper()
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 10, Seed: 3})
	model := writeModel(t, c.dir, "resnet", 32)
	c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--quiet")
	headFile := filepath.Join(c.dir, "h.head")
	c.ok(append([]string{"train", "--head", headFile, "--quiet"}, trainArgs...)...)
	return c, ds, headFile
}

// TestTuneLayersThenPlainTrain: the documented path `extract --tune-layers
// K` then a plain `train` picks an optimizer that can fine-tune (L-BFGS
// cannot), and the head evaluates, exports and predicts.
func TestTuneLayersThenPlainTrain(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 10, Seed: 4})
	model := writeModel(t, c.dir, "vgg", 32)
	c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--tune-layers", "2", "--quiet")
	headFile := filepath.Join(c.dir, "tuned.head")
	var tr struct {
		Optimizer string `json:"optimizer"`
		Kind      string `json:"kind"`
	}
	r := c.ok("train", "--head", headFile, "--json", "--quiet", "--epochs", "5")
	if err := json.Unmarshal([]byte(r.stdout), &tr); err != nil {
		t.Fatalf("train --json: %v\n%s", err, r.stdout)
	}
	if tr.Optimizer != "adam" || tr.Kind != "linear" {
		t.Errorf("train after --tune-layers chose %s for a %s head, want adam", tr.Optimizer, tr.Kind)
	}
	c.ok("eval", "--head", headFile, "--quiet")
	onnx := filepath.Join(c.dir, "tuned.onnx")
	c.ok("export", "--head", headFile, "-o", onnx)
	out := filepath.Join(c.dir, "p.jsonl")
	c.ok("predict", "--export", onnx, filepath.Join(ds, "red"), "--out", out, "--quiet")
	if rows := readPredictions(t, out); len(rows) != 10 {
		t.Errorf("predict with the tuned export wrote %d rows, want 10", len(rows))
	}
	// Asking for L-BFGS explicitly is refused with the reason.
	errorLine(t, c.run("train", "--head", headFile, "--optimizer", "lbfgs", "--quiet"), "lbfgs", "adam")
}

// TestEvalUsesRecordedSplit: train records its split, so eval finds the
// same test rows without --val/--test; cache export-npy --head writes the
// same division; a view changed since training is refused, not silently
// re-split.
func TestEvalUsesRecordedSplit(t *testing.T) {
	c, ds, headFile := trained(t, "--val", "0.2", "--test", "0.3", "--seed", "7")
	var ev struct {
		Split string `json:"split"`
		Eval  struct {
			N int `json:"n"`
		} `json:"eval"`
	}
	r := c.ok("eval", "--head", headFile, "--json", "--quiet")
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, r.stdout)
	}
	if ev.Split != "test" || ev.Eval.N != 9 { // 30% of 10 images of each of 3 classes
		t.Errorf("eval: %d images of the %q split, want 9 of test (the recorded 30%%)", ev.Eval.N, ev.Split)
	}
	if r := c.ok("eval", "--head", headFile, "--quiet"); !strings.HasPrefix(r.stdout, "eval: 9 images of the test split ("+ds+")") {
		t.Errorf("eval does not name the dataset the head was trained on: %q", strings.SplitN(r.stdout, "\n", 2)[0])
	}
	npy := filepath.Join(c.dir, "npy")
	r = c.ok("cache", "export-npy", "--head", headFile, "-o", npy)
	if !strings.Contains(r.stderr, "(15/6/9 rows") {
		t.Errorf("export-npy --head did not write the head's 15/6/9 split: %s", r.stderr)
	}
	if r := c.run("eval", "--head", headFile, "--val", "0.1"); r.code == 0 {
		t.Errorf("eval still takes --val: %s", r.stderr)
	}
	// One more image: the view changes and the recorded rows no longer
	// name the same images.
	extra := filepath.Join(ds, "red", "img_extra.png")
	data, _ := os.ReadFile(filepath.Join(ds, "green", "img_0000.png"))
	if err := os.WriteFile(extra, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("extract", ds, "--model", filepath.Join(c.dir, "resnet.onnx"), "--preset", "imagenet", "--quiet")
	errorLine(t, c.run("eval", "--head", headFile, "--quiet"), "changed since the head was trained")
}

// TestModelFlagMeanings: --model names a backbone; predict runs a head or
// an export and says which is which.
func TestModelFlagMeanings(t *testing.T) {
	c, ds, headFile := trained(t)
	img := filepath.Join(ds, "red", "img_0000.png")
	oneLineError(t, c.run("predict", "--model", "resnet50", img), "resnet50", "headtune export", "extract --model")
	oneLineError(t, c.run("predict", "--head", headFile, "--export", "x.onnx", img), "both --head", "--export")
	oneLineError(t, c.run("predict", "--head", headFile, "--model", "x.onnx", img), "both --head")
	oneLineError(t, c.run("predict", "--export", filepath.Join(c.dir, "resnet.onnx"), img), "headtune export")
	oneLineError(t, c.run("eval", "--head", headFile, "--model", "resnet50"), "--original")
}

// TestUnknownNames: close catalog names are suggested; unknown commands
// are named and the commands listed; `version` works.
func TestUnknownNames(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 2, Seed: 5})
	oneLineError(t, c.run("extract", ds, "--model", "mobilenet"), "mobilenet", "did you mean", "mobilenetv2", "models list")
	oneLineError(t, c.run("models", "pull", "resnet05"), "did you mean resnet50")
	r := c.run("foo")
	oneLineError(t, r, `unknown command "foo"`, "extract", "predict")
	if r.code != 2 {
		t.Errorf("unknown command: exit %d, want 2", r.code)
	}
	oneLineError(t, c.run("cache", "frobnicate"), `unknown command "cache frobnicate"`, "verify")
	if r := c.ok("version"); !strings.HasPrefix(r.stdout, "headtune ") {
		t.Errorf("version printed %q", r.stdout)
	}
}

// TestHeadFileErrors: no head yet, a model given as a head, a head given as
// an export: each says what to do.
func TestHeadFileErrors(t *testing.T) {
	c, ds, headFile := trained(t)
	img := filepath.Join(ds, "red", "img_0000.png")
	empty := filepath.Join(c.dir, "empty")
	os.MkdirAll(empty, 0o755)
	for _, args := range [][]string{{"predict", img}, {"eval"}, {"export"}} {
		r := c.runIn(empty, args...)
		oneLineError(t, r, "no head at headtune.head yet", "headtune train")
	}
	onnx := filepath.Join(c.dir, "h.onnx")
	c.ok("export", "--head", headFile, "-o", onnx)
	oneLineError(t, c.run("predict", "--head", onnx, img), "ONNX model", "--export "+onnx)
	oneLineError(t, c.run("eval", "--head", onnx), "ONNX model", "--export")
	oneLineError(t, c.run("predict", "--export", headFile, img), "head file", "--head "+headFile)
}

// TestORTErrors: ONNX Runtime problems are reported as themselves, naming
// the flag they came from; a binary outside the repository finds the
// library through the location `make setup` records.
func TestORTErrors(t *testing.T) {
	c, ds, headFile := trained(t)
	img := filepath.Join(ds, "red", "img_0000.png")
	r := c.run("--ort-lib", "/nonexistent.so", "predict", "--head", headFile, img)
	oneLineError(t, r, "--ort-lib /nonexistent.so")
	if strings.Contains(r.stderr, "HEADTUNE_ORT_LIB") || strings.Contains(r.stderr, "was trained on backbone") {
		t.Errorf("ONNX Runtime error with a wrong name or prefix: %s", r.stderr)
	}
	r = c.run("--ort-lib", "/nonexistent.so", "extract", ds, "--model", filepath.Join(c.dir, "resnet.onnx"))
	oneLineError(t, r, "--ort-lib /nonexistent.so")

	// The e2e binary lives in a temporary folder, outside the repository:
	// with no variable set it finds the library only through the record.
	home := filepath.Join(c.dir, "recorded-home")
	os.MkdirAll(home, 0o755)
	os.WriteFile(filepath.Join(home, "onnxruntime-library"), []byte(ortLib+"\n"), 0o644)
	c.env = []string{"HEADTUNE_ORT_LIB=", "ONNXRUNTIME_SHARED_LIBRARY_PATH=", "HEADTUNE_HOME=" + home}
	c.ok("predict", "--head", headFile, img, "--quiet")
	systemLib := false
	for _, p := range []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"} {
		if _, err := os.Stat(filepath.Join(p, "libonnxruntime.so.1")); err == nil {
			systemLib = true
		}
	}
	if !systemLib {
		os.Remove(filepath.Join(home, "onnxruntime-library"))
		oneLineError(t, c.run("predict", "--head", headFile, img), ort.ErrLibraryMissing.Error(), "make setup")
	}
}

// TestInspectExport: inspect names the feature vector inside headtune's own
// export instead of "none".
func TestInspectExport(t *testing.T) {
	c, _, headFile := trained(t)
	onnx := filepath.Join(c.dir, "h.onnx")
	c.ok("export", "--head", headFile, "-o", onnx)
	r := c.ok("inspect", onnx)
	if !strings.Contains(r.stdout, "headtune export: linear head (3 classes)") {
		t.Errorf("inspect does not say it is a headtune export:\n%s", r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "feature tensor:") && (strings.Contains(line, "none") || !strings.Contains(line, "features")) {
			t.Errorf("inspect on an export: %q", line)
		}
	}
}

// TestSmallRoughEdges covers the one-line fixes.
func TestSmallRoughEdges(t *testing.T) {
	c, ds, headFile := trained(t)
	model := filepath.Join(c.dir, "resnet.onnx")

	// train --view with a missing file names it instead of looking
	// elsewhere.
	oneLineError(t, c.run("train", "--view", "nope.csv", "--head", filepath.Join(c.dir, "x.head")), "nope.csv")

	// predict -o p.txt writes text; an unknown extension is refused;
	// --out ends with a summary.
	txt := filepath.Join(c.dir, "p.txt")
	r := c.ok("predict", "--head", headFile, filepath.Join(ds, "blue"), "-o", txt)
	data, _ := os.ReadFile(txt)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 10 || strings.Count(lines[0], "\t") != 2 || strings.Contains(string(data), ",probability,") {
		t.Errorf("predict -o p.txt did not write 10 text lines:\n%s", data)
	}
	if !strings.Contains(r.stderr, "predict: 10 images, 0 unreadable, rows in "+txt) {
		t.Errorf("predict --out printed no summary: %q", r.stderr)
	}
	oneLineError(t, c.run("predict", "--head", headFile, filepath.Join(ds, "blue"), "-o", filepath.Join(c.dir, "p.xyz")), ".xyz", ".csv")
	if _, err := os.Stat(filepath.Join(c.dir, "p.xyz")); err == nil {
		t.Error("a refused output file was created")
	}

	// An extract that computes nothing reports no rate.
	r = c.ok("extract", ds, "--model", model, "--preset", "imagenet")
	if strings.Contains(r.stderr, "img/s") || !strings.Contains(r.stderr, "none computed, 30 reused") {
		t.Errorf("fully cached extract: %q", r.stderr)
	}

	// The MLP's last line says how training ended in words.
	r = c.ok("train", "--kind", "mlp", "--epochs", "3", "--patience", "0", "--head", filepath.Join(c.dir, "m.head"))
	if strings.Contains(r.stderr, "epochs after") || !strings.Contains(r.stderr, "ran all epochs (3 epochs") {
		t.Errorf("mlp training summary: %s", r.stderr)
	}

	// A one-class dataset is refused at extract.
	one := filepath.Join(c.dir, "one")
	writeDataset(t, one, DatasetOptions{Classes: 1, PerClass: 3, Seed: 6})
	oneLineError(t, c.run("extract", one, "--model", model, "--preset", "imagenet"), "only one class (red)", "at least two classes")
}

// TestScriptsLib checks scripts/lib.sh, which setup.sh and demo.sh share:
// headings carry no escape codes off a terminal, and apt_install judges by
// what dpkg has installed, showing apt's reason when a package is missing.
func TestScriptsLib(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash not found")
	}
	lib, _ := filepath.Abs("../scripts/lib.sh")
	run := func(script string, env ...string) (string, error) {
		cmd := exec.Command(bash, "-c", ". "+lib+"\n"+script)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(`step "hello" | cat`, "TERM=xterm")
	if err != nil || strings.Contains(out, "\x1b") || !strings.Contains(out, "== hello") {
		t.Errorf("step into a pipe printed %q (%v)", out, err)
	}

	// Fake apt-get and dpkg-query: apt-get fails (a racing apt holding the
	// lock), yet dpkg reports the package installed; and the reverse.
	bin := t.TempDir()
	fake := func(name, body string) {
		os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755)
	}
	fake("apt-get", `echo "E: Could not get lock /var/lib/dpkg/lock-frontend"; exit ${FAKE_APT_STATUS:-100}`)
	fake("dpkg-query", `[ "$FAKE_INSTALLED" = 1 ] && echo "install ok installed" || echo "deinstall ok config-files"`)
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	logf := `log() { echo "setup: $*" >&2; }; `
	out, err = run(logf+`apt_install log libfoo0 && echo RESULT=ok || echo RESULT=fail`, path, "FAKE_INSTALLED=1")
	if !strings.Contains(out, "RESULT=ok") || strings.Contains(out, "could not install") {
		t.Errorf("apt failed but the package is installed: %q (%v)", out, err)
	}
	out, err = run(logf+`apt_install log libfoo0 && echo RESULT=ok || echo RESULT=fail`, path, "FAKE_INSTALLED=0", "FAKE_APT_STATUS=0")
	if !strings.Contains(out, "RESULT=fail") || !strings.Contains(out, "could not install libfoo0") || !strings.Contains(out, "Could not get lock") {
		t.Errorf("apt 'succeeded' but nothing is installed: %q (%v)", out, err)
	}
}

// runIn runs headtune with dir as its working folder.
func (c *cli) runIn(dir string, args ...string) *result {
	c.t.Helper()
	cc := *c
	cc.dir = dir
	return cc.run(args...)
}
