package shardplan_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

func TestBalance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var samples []source.Sample
	var total int64
	for i := 0; i < 1003; i++ {
		s := source.Sample{Key: fmt.Sprintf("k%04d", i), Size: int64(1000 + rng.IntN(200000))}
		total += s.Size
		samples = append(samples, s)
	}
	const n = 16
	shards := shardplan.Balance(samples, n)
	seen := map[string]bool{}
	minC, maxC := len(samples), 0
	var minB, maxB int64 = total, 0
	for _, sh := range shards {
		var b int64
		for j, s := range sh {
			if seen[s.Key] {
				t.Fatalf("%s in two shards", s.Key)
			}
			seen[s.Key] = true
			if j > 0 && sh[j-1].Key >= s.Key {
				t.Fatalf("shard not sorted by key at %s", s.Key)
			}
			b += s.Size
		}
		minC, maxC = min(minC, len(sh)), max(maxC, len(sh))
		minB, maxB = min(minB, b), max(maxB, b)
	}
	if len(seen) != len(samples) {
		t.Fatalf("%d of %d samples assigned", len(seen), len(samples))
	}
	if maxC-minC > 1 {
		t.Errorf("counts range %d..%d, want a difference of at most 1", minC, maxC)
	}
	if spread := float64(maxB-minB) / (float64(total) / n); spread > 0.02 {
		t.Errorf("bytes per shard range %d..%d: %.1f%% of the mean, want under 2%%", minB, maxB, 100*spread)
	}
}

func TestWriteReadPlan(t *testing.T) {
	ctx := context.Background()
	data, _ := objstore.Open(ctx, "mem://plan-test/data")
	for i := 0; i < 10; i++ {
		data.WriteAll(ctx, fmt.Sprintf("c%d/img%02d.jpg", i%2, i), []byte(strings.Repeat("x", i+1)))
	}
	ds, err := source.Open(ctx, "mem://plan-test/data")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := objstore.Create(ctx, "mem://plan-test/plan")
	p, err := shardplan.Write(ctx, ds, out, shardplan.Options{Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	if p.Samples != 10 || p.Bytes != 55 || p.Root != "mem://plan-test/data" {
		t.Errorf("plan = %+v", p)
	}
	back, err := shardplan.Read(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := 0; i < 3; i++ {
		sh, err := shardplan.ReadShard(ctx, out, back, i)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sh {
			if s.Version == "" || s.Label == "" || s.Size == 0 {
				t.Errorf("shard %d row %+v lacks fields", i, s)
			}
		}
		got += len(sh)
	}
	if got != 10 {
		t.Errorf("%d rows over the shards, want 10", got)
	}
	if _, err := shardplan.Write(ctx, ds, out, shardplan.Options{Shards: 2}); !errors.Is(err, shardplan.ErrPlanExists) {
		t.Errorf("second plan in the same folder: err = %v, want ErrPlanExists", err)
	}
}

func TestResolveIndex(t *testing.T) {
	for _, tc := range []struct {
		flag string
		env  map[string]string
		want string // "i/n from" or "error: substring"
	}{
		{"3/8", nil, "3/8 --shard"},
		{"3", nil, "3/8 --shard"},
		{"3/4", nil, "error: the plan has 8"},
		{"8/8", nil, "error: outside 0..7"},
		{"x", nil, "error: expected i/N"},
		{"", map[string]string{"JOB_COMPLETION_INDEX": "5"}, "5/8 JOB_COMPLETION_INDEX (Kubernetes Indexed Job)"},
		{"2/8", map[string]string{"JOB_COMPLETION_INDEX": "5"}, "2/8 --shard"},
		{"", map[string]string{"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "8"}, "7/8 SLURM_ARRAY_TASK_ID (Slurm job array)"},
		{"", map[string]string{"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}, "7/8 SLURM_ARRAY_TASK_ID-SLURM_ARRAY_TASK_MIN (Slurm job array)"},
		{"", map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, "error: 4 tasks but the plan has 8"},
		{"", map[string]string{"AWS_BATCH_JOB_ARRAY_INDEX": "0"}, "0/8 AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job)"},
		{"", map[string]string{"BATCH_TASK_INDEX": "6", "BATCH_TASK_COUNT": "8"}, "6/8 BATCH_TASK_INDEX (Google Cloud Batch)"},
		{"", map[string]string{"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "8"}, "1/8 CLOUD_RUN_TASK_INDEX (Cloud Run job)"},
		{"", map[string]string{"JOB_COMPLETION_INDEX": "-1"}, "error: outside 0..7"},
		{"", nil, "error: no shard index"},
	} {
		ix, err := shardplan.ResolveIndex(tc.flag, 8, func(k string) string { return tc.env[k] })
		got := fmt.Sprintf("%d/%d %s", ix.Shard, ix.Shards, ix.From)
		if err != nil {
			got = "error: " + err.Error()
		}
		wantErr := strings.HasPrefix(tc.want, "error: ")
		if !strings.Contains(got, strings.TrimPrefix(tc.want, "error: ")) || wantErr != (err != nil) {
			t.Errorf("ResolveIndex(%q, %v) = %s, want %s", tc.flag, tc.env, got, tc.want)
		}
	}
}
