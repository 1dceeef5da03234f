package predictions

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
)

func init() {
	Register(&Format{Name: "jsonl", Exts: []string{".jsonl", ".json"}, New: NewJSONL, Done: JSONLDone})
}

// One JSON object per line, the fields of Row.
type jsonlWriter struct {
	w     *bufio.Writer
	embed bool
}

// NewJSONL returns a Writer of JSON Lines.
func NewJSONL(w io.Writer, opt Options) Writer {
	return &jsonlWriter{w: bufio.NewWriter(w), embed: opt.Embeddings}
}

func (jw *jsonlWriter) Write(r Row) error {
	if !jw.embed {
		r.Embedding = nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := jw.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return jw.w.Flush()
}

func (jw *jsonlWriter) Close() error { return jw.w.Flush() }

// JSONLDone returns the "path" of every line that parses as a JSON object.
func JSONLDone(r io.Reader) (map[string]bool, error) {
	done := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // embeddings make long lines
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, err
		}
		if row.Path != "" {
			done[row.Path] = true
		}
	}
	return done, sc.Err()
}
