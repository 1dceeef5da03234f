package segment

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes what a merge did, as `headtune cache merge` shows it:
// the counts, the shards not complete, the providers when rows come from
// more than one, and the backbone and view merged into.
func (s *MergeSummary) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "merge: %d chunks of %d shards: %d images, %d new rows, %d already cached, %d skipped at extraction (%.0f rows/s)\n",
		s.Chunks, s.Shards, s.Entries, s.NewRows, s.KnownRows, s.Skipped, s.RowsPerS)
	if len(s.Incomplete) > 0 {
		fmt.Fprintf(w, "merge: %d shards not complete (merged what was sealed), first: %s\n", len(s.Incomplete), s.Incomplete[0])
	}
	if len(s.Providers) > 1 {
		fmt.Fprintf(w, "merge: rows computed by %s: features agree across them to about 1e-5, not bit for bit\n", strings.Join(s.Providers, ", "))
	}
	_, err := fmt.Fprintf(w, "merge: backbone %s (%s), view %s; `headtune train` now trains on it\n", s.BackboneID[:16], s.Model, s.View)
	return err
}
