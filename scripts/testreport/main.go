// Command testreport reads `go test -json` on stdin, prints what a plain
// `go test` would (package results, and the output of failed tests), and
// ends with the list of skipped tests and their reasons, which plain
// `go test` hides unless -v. It exits 1 when a test or build failed.
//
//	go test -json ./... | go run ./scripts/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// skip is one skipped test (or a package-level SKIP line from a TestMain).
type skip struct {
	Package, Test, Reason string
}

// report consumes events and writes the running output to w; it returns
// the skips and whether anything failed.
func report(r io.Reader, w io.Writer) (skips []skip, failed bool, err error) {
	type key struct{ pkg, test string }
	output := map[key][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			// Not an event (go vet or build chatter): pass it on.
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output", "build-output":
			output[k] = append(output[k], e.Output)
			if e.Test == "" && strings.Contains(e.Output, "SKIP (asset missing)") {
				skips = append(skips, skip{Package: e.Package, Reason: strings.TrimSpace(e.Output)})
			}
		case "skip":
			if e.Test != "" {
				skips = append(skips, skip{Package: e.Package, Test: e.Test, Reason: reason(output[k])})
			}
			delete(output, k)
		case "pass":
			delete(output, k)
			if e.Test == "" {
				fmt.Fprintf(w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
		case "fail", "build-fail":
			failed = true
			for _, o := range output[k] {
				io.WriteString(w, o)
			}
			delete(output, k)
			if e.Test == "" && e.Action == "fail" {
				fmt.Fprintf(w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
		}
	}
	return skips, failed, sc.Err()
}

// reason is a skipped test's message: its output without the RUN and
// SKIP banners, joined on one line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, " ")
}

func main() {
	skips, failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].Package != skips[j].Package {
			return skips[i].Package < skips[j].Package
		}
		return skips[i].Test < skips[j].Test
	})
	fmt.Printf("\n%d skipped:\n", len(skips))
	for _, s := range skips {
		name := s.Test
		if name == "" {
			name = "(package)"
		}
		fmt.Printf("  %s %s: %s\n", s.Package, name, s.Reason)
	}
	if failed {
		os.Exit(1)
	}
}
