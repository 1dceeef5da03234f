// Package k8stest checks the reference deployments in deploy/: the
// Kubernetes manifest decodes strictly into the Kubernetes API types, and
// the Slurm script runs headtune with the shard index the scheduler sets.
// It is a module of its own so that headtune's binary and go.mod do not
// carry the Kubernetes API packages.
package k8stest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestIndexedJobManifest(t *testing.T) {
	data, err := os.ReadFile("../kubernetes/extract-indexed-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var job batchv1.Job
	if err := decodeStrict(data, &job); err != nil {
		t.Fatalf("decode into batch/v1 Job: %v", err)
	}
	// The strict decode is what catches typos: a misspelt field must fail.
	var typo batchv1.Job
	if err := decodeStrict([]byte(strings.Replace(string(data), "  backoffLimitPerIndex:", "  backoffLimitPerIndx:", 1)), &typo); err == nil {
		t.Error("a misspelt field decoded without error: the check is not strict")
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		t.Errorf("apiVersion %q kind %q, want batch/v1 Job", job.APIVersion, job.Kind)
	}
	s := job.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", s.CompletionMode)
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions < 4**s.Parallelism {
		t.Errorf("completions %v, parallelism %v: want many more completions than parallelism", s.Completions, s.Parallelism)
	}
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex < 1 {
		t.Errorf("backoffLimitPerIndex %v, want retries per index", s.BackoffLimitPerIndex)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q: backoffLimitPerIndex needs Never", s.Template.Spec.RestartPolicy)
	}
	if len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(s.Template.Spec.Containers))
	}
	c := s.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"extract", "--plan=", "--model="} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "--shard") {
		t.Errorf("args %q pin a shard: the index must come from JOB_COMPLETION_INDEX", args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "KEY") {
			t.Errorf("env %s: credentials must come from the service account, not the manifest", e.Name)
		}
	}
	if env["HEADTUNE_ORT_LIB"] == "" {
		t.Error("HEADTUNE_ORT_LIB not set: the image's ONNX Runtime library must be named")
	}
	cache := env["HEADTUNE_CACHE"]
	onScratch := false
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(cache, m.MountPath+"/") {
			for _, v := range s.Template.Spec.Volumes {
				if v.Name == m.Name && v.EmptyDir != nil {
					onScratch = true
				}
			}
		}
	}
	if !onScratch {
		t.Errorf("HEADTUNE_CACHE=%q is not on an emptyDir volume: the cache and its lock belong on local disk", cache)
	}
}

// decodeStrict decodes YAML into v refusing repeated keys, unknown fields
// and trailing documents.
func decodeStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the first document")
	}
	return nil
}

// TestSlurmScript runs the array script with a stand-in headtune and the
// variables Slurm sets, and checks what it runs.
func TestSlurmScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bash not found: %v", err) // CI must have every asset
		}
		t.Skip("bash not found")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "headtune")
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" > \"$OUT\"\necho \"$HEADTUNE_CACHE\" >> \"$OUT\"\n"), 0o755)
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bash, "../slurm/extract-array.sbatch")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HEADTUNE=" + fake, "OUT=" + out, "TMPDIR=" + dir,
		"PLAN=s3://b/plan", "MODEL=/m.onnx", "SLURM_ARRAY_JOB_ID=77", "SLURM_ARRAY_TASK_ID=5", "SLURM_ARRAY_TASK_COUNT=16", "SLURM_CPUS_PER_TASK=4"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script failed: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 2 || lines[0] != "--threads 4 --quiet extract --plan s3://b/plan --model /m.onnx --chunk-rows 1024" {
		t.Errorf("ran %q", got)
	}
	if len(lines) == 2 && lines[1] != filepath.Join(dir, "headtune-cache-77-5") {
		t.Errorf("cache %q, want one per task under TMPDIR", lines[1])
	}
	// Without PLAN the script refuses before running anything.
	cmd = exec.Command(bash, "../slurm/extract-array.sbatch")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HEADTUNE=" + fake, "OUT=" + out, "MODEL=/m.onnx"}
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "PLAN") {
		t.Errorf("script without PLAN: err %v, output %q; want a refusal naming PLAN", err, b)
	}
}
