package shardplan

import (
	"fmt"
	"strconv"
	"strings"
)

// Index is the shard a task works on, and where that came from.
type Index struct {
	Shard, Shards int
	// From names the source: "--shard" or the environment variable.
	From string
}

// schedulerVars are the index (and count) variables of the batch
// schedulers, in the order they are consulted.
var schedulerVars = []struct{ index, count, name string }{
	{"JOB_COMPLETION_INDEX", "", "Kubernetes Indexed Job"},
	{"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "Slurm job array"},
	{"AWS_BATCH_JOB_ARRAY_INDEX", "", "AWS Batch array job"},
	{"BATCH_TASK_INDEX", "BATCH_TASK_COUNT", "Google Cloud Batch"},
	{"CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "Cloud Run job"},
}

// ResolveIndex finds this task's shard of a plan with shards shards: from
// flag ("i/N" or "i", as --shard gives it) when not empty, else from the
// first scheduler variable set in the environment (getenv). A count given
// by the flag or the scheduler must equal the plan's.
func ResolveIndex(flag string, shards int, getenv func(string) string) (Index, error) {
	if flag != "" {
		is, ns, hasN := strings.Cut(flag, "/")
		i, err := strconv.Atoi(strings.TrimSpace(is))
		if err != nil {
			return Index{}, fmt.Errorf("--shard %q: expected i/N, e.g. 3/16", flag)
		}
		n := shards
		if hasN {
			if n, err = strconv.Atoi(strings.TrimSpace(ns)); err != nil || n < 1 {
				return Index{}, fmt.Errorf("--shard %q: expected i/N, e.g. 3/16", flag)
			}
		}
		return check(Index{Shard: i, Shards: n, From: "--shard"}, shards)
	}
	for _, v := range schedulerVars {
		raw := getenv(v.index)
		if raw == "" {
			continue
		}
		i, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return Index{}, fmt.Errorf("%s=%q (%s): not an integer", v.index, raw, v.name)
		}
		from := v.index + " (" + v.name + ")"
		if v.index == "SLURM_ARRAY_TASK_ID" {
			// Arrays may start anywhere (--array=1-16): count from the first.
			if m := getenv("SLURM_ARRAY_TASK_MIN"); m != "" {
				lo, err := strconv.Atoi(m)
				if err != nil {
					return Index{}, fmt.Errorf("SLURM_ARRAY_TASK_MIN=%q: not an integer", m)
				}
				i -= lo
				from = "SLURM_ARRAY_TASK_ID-SLURM_ARRAY_TASK_MIN (" + v.name + ")"
			}
		}
		n := shards
		if v.count != "" {
			if c := getenv(v.count); c != "" {
				if n, err = strconv.Atoi(c); err != nil {
					return Index{}, fmt.Errorf("%s=%q: not an integer", v.count, c)
				}
				if n != shards {
					return Index{}, fmt.Errorf("%s=%d tasks but the plan has %d shards: run one task per shard", v.count, n, shards)
				}
			}
		}
		return check(Index{Shard: i, Shards: n, From: from}, shards)
	}
	return Index{}, fmt.Errorf("no shard index: pass --shard i/%d, or run under a scheduler that sets one of %s", shards, varNames())
}

func check(ix Index, shards int) (Index, error) {
	if ix.Shards != shards {
		return Index{}, fmt.Errorf("%s: %d shards, but the plan has %d", ix.From, ix.Shards, shards)
	}
	if ix.Shard < 0 || ix.Shard >= shards {
		return Index{}, fmt.Errorf("%s: shard %d outside 0..%d", ix.From, ix.Shard, shards-1)
	}
	return ix, nil
}

func varNames() string {
	var s []string
	for _, v := range schedulerVars {
		s = append(s, v.index)
	}
	return strings.Join(s, ", ")
}
