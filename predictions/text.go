package predictions

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

func init() {
	Register(&Format{Name: "text", Exts: []string{".txt"}, New: NewText, Done: TextDone})
}

// One line per image for people: "path<TAB>class<TAB>(class p, class p)",
// or "path<TAB>error: reason". Embeddings are not shown.
type textWriter struct{ w *bufio.Writer }

// NewText returns a Writer of tab-separated lines for a terminal.
func NewText(w io.Writer, opt Options) Writer { return &textWriter{w: bufio.NewWriter(w)} }

func (tw *textWriter) Write(r Row) error {
	path := strings.NewReplacer("\t", " ", "\n", " ").Replace(r.Path)
	if r.Error != "" {
		fmt.Fprintf(tw.w, "%s\terror: %s\n", path, strings.ReplaceAll(r.Error, "\n", " "))
	} else {
		parts := make([]string, len(r.TopK))
		for j, t := range r.TopK {
			parts[j] = fmt.Sprintf("%s %.3f", t.Class, t.Probability)
		}
		if f := r.Face; f != nil {
			path = fmt.Sprintf("%s\tface %d at %.0f,%.0f %.0fx%.0f", path, f.Index, f.X, f.Y, f.W, f.H)
		}
		extra := ""
		if r.Set != nil {
			extra += "\tset {" + strings.Join(r.Set, ", ") + "}"
		}
		if r.Outside > 0 {
			extra += fmt.Sprintf("\toutside the training data (%.1fx the limit)", r.Outside)
		}
		fmt.Fprintf(tw.w, "%s\t%s\t(%s)%s\n", path, r.Class, strings.Join(parts, ", "), extra)
	}
	return tw.w.Flush()
}

func (tw *textWriter) Close() error { return tw.w.Flush() }

// TextDone returns the path before the first tab of every line.
func TextDone(r io.Reader) (map[string]bool, error) {
	done := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, '\t')
		if i <= 0 {
			if strings.TrimSpace(line) == "" {
				continue
			}
			return nil, fmt.Errorf("line %q has no tab after the path", line)
		}
		done[line[:i]] = true
	}
	return done, sc.Err()
}
