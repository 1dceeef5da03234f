// Package ortprof reads ONNX Runtime's profiler output (the JSON trace a
// session made with ort.SessionOptions.ProfilePrefix writes on Close) and
// sums its node times by layer class, using the optimised graph ONNX Runtime
// ran (ort.SessionOptions.OptimizedModelPath) to tell the classes apart. It
// is how headtune shows where int8 inference gains time over float32 and
// where it does not. Pure Go: it parses files, it runs nothing.
package ortprof

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// KernelSuffix ends the name of the event that times one node's kernel; the
// profiler's other per-node events (fences) are left out.
const KernelSuffix = "_kernel_time"

// Event is one run of one node's kernel.
type Event struct {
	Node   string  // node name in the optimised graph
	Op     string  // operator type as ONNX Runtime reports it (e.g. QLinearConv)
	Start  float64 // µs since the session started
	Micros float64 // duration in µs
}

// Profile is the part of a profile that ortprof uses.
type Profile struct {
	// Runs are the session's Run calls as [start, end) in µs since the
	// session started, in time order.
	Runs [][2]float64
	// Kernels are the node kernel events, in file order.
	Kernels []Event
}

// rawEvent is one element of the trace array.
type rawEvent struct {
	Cat  string  `json:"cat"`
	Name string  `json:"name"`
	TS   float64 `json:"ts"`
	Dur  float64 `json:"dur"`
	Args struct {
		OpName string `json:"op_name"`
	} `json:"args"`
}

// Parse decodes a profile: a JSON array of trace events, of which it keeps
// the "Session" events named "model_run" (one per Run call) and the "Node"
// events named NODE_kernel_time. Events with a negative or non-finite time,
// or a node event without a node name, make it fail: the figures summed
// from them would be wrong.
func Parse(r io.Reader) (*Profile, error) {
	var raw []rawEvent
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("not an ONNX Runtime profile (a JSON array of trace events): %w", err)
	}
	p := &Profile{}
	for i, e := range raw {
		if e.TS < 0 || e.Dur < 0 || e.TS != e.TS || e.Dur != e.Dur || e.TS > 1e300 || e.Dur > 1e300 {
			return nil, fmt.Errorf("event %d (%s): time %v, duration %v µs", i, e.Name, e.TS, e.Dur)
		}
		switch {
		case e.Cat == "Session" && e.Name == "model_run":
			p.Runs = append(p.Runs, [2]float64{e.TS, e.TS + e.Dur})
		case e.Cat == "Node" && strings.HasSuffix(e.Name, KernelSuffix):
			node := strings.TrimSuffix(e.Name, KernelSuffix)
			if node == "" {
				return nil, fmt.Errorf("event %d: kernel event without a node name", i)
			}
			p.Kernels = append(p.Kernels, Event{Node: node, Op: e.Args.OpName, Start: e.TS, Micros: e.Dur})
		}
	}
	sort.SliceStable(p.Runs, func(a, b int) bool { return p.Runs[a][0] < p.Runs[b][0] })
	return p, nil
}

// PerRun returns each node's kernel time in µs per Run call, averaged over
// the runs after the first skip (the first runs of a session pay for memory
// allocation and cache warm-up), and the number of runs averaged over. Kernel
// events outside those runs are left out. It fails when no run is left.
func (p *Profile) PerRun(skip int) (map[string]NodeTime, int, error) {
	if skip < 0 {
		skip = 0
	}
	if len(p.Runs) <= skip {
		return nil, 0, fmt.Errorf("profile has %d runs, none left after skipping %d", len(p.Runs), skip)
	}
	runs := p.Runs[skip:]
	in := func(t float64) bool {
		// Runs are sorted and do not overlap on a 1-thread measurement;
		// a binary search finds the last run starting at or before t.
		k := sort.Search(len(runs), func(i int) bool { return runs[i][0] > t }) - 1
		return k >= 0 && t < runs[k][1]
	}
	out := map[string]NodeTime{}
	for _, e := range p.Kernels {
		if !in(e.Start) {
			continue
		}
		nt := out[e.Node]
		nt.Op = e.Op
		nt.Micros += e.Micros
		out[e.Node] = nt
	}
	for k, nt := range out {
		nt.Micros /= float64(len(runs))
		out[k] = nt
	}
	return out, len(runs), nil
}

// NodeTime is one node's kernel time per run.
type NodeTime struct {
	Op     string
	Micros float64
}
