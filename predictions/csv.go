package predictions

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

func init() {
	Register(&Format{Name: "csv", Exts: []string{".csv"}, New: NewCSV, Done: CSVDone})
}

// CSV columns: path, class, probability, top_k ("class:p;class:p"), error
// and, with embeddings, embedding (space-separated values); with sets, set
// ("class;class") and outside (empty within the domain) before embedding.
type csvWriter struct {
	w     *bufio.Writer
	c     *csv.Writer
	embed bool
	faces bool
	sets  bool
}

// NewCSV returns a Writer of CSV rows with a header line when opt.Header.
func NewCSV(w io.Writer, opt Options) Writer {
	bw := bufio.NewWriter(w)
	cw := &csvWriter{w: bw, c: csv.NewWriter(bw), embed: opt.Embeddings, faces: opt.Faces, sets: opt.Sets}
	if opt.Header {
		hdr := []string{"path", "class", "probability", "top_k", "error"}
		if opt.Faces {
			hdr = append([]string{"path", "face", "x", "y", "w", "h", "face_score"}, hdr[1:]...)
		}
		if opt.Sets {
			hdr = append(hdr, "set", "outside")
		}
		if opt.Embeddings {
			hdr = append(hdr, "embedding")
		}
		cw.c.Write(hdr)
	}
	return cw
}

func (cw *csvWriter) Write(r Row) error {
	parts := make([]string, len(r.TopK))
	for j, t := range r.TopK {
		parts[j] = t.Class + ":" + formatProb(t.Probability)
	}
	prob := ""
	if r.Error == "" {
		prob = formatProb(r.Probability)
	}
	rec := []string{r.Path, r.Class, prob, strings.Join(parts, ";"), r.Error}
	if cw.sets {
		out := ""
		if r.Outside > 0 {
			out = strconv.FormatFloat(r.Outside, 'g', 4, 64)
		}
		rec = append(rec, strings.Join(r.Set, ";"), out)
	}
	if cw.faces {
		f := []string{"", "", "", "", "", ""}
		if r.Face != nil {
			f = []string{strconv.Itoa(r.Face.Index), formatPx(r.Face.X), formatPx(r.Face.Y), formatPx(r.Face.W), formatPx(r.Face.H), formatProb(r.Face.Score)}
		}
		rec = append(append([]string{r.Path}, f...), rec[1:]...)
	}
	if cw.embed {
		rec = append(rec, FormatVector(r.Embedding))
	}
	if err := cw.c.Write(rec); err != nil {
		return err
	}
	cw.c.Flush()
	if err := cw.c.Error(); err != nil {
		return err
	}
	return cw.w.Flush()
}

func (cw *csvWriter) Close() error {
	cw.c.Flush()
	if err := cw.c.Error(); err != nil {
		return err
	}
	return cw.w.Flush()
}

// CSVDone returns the paths of a predictions CSV (the first column of every
// row after the header).
func CSVDone(r io.Reader) (map[string]bool, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for i, rec := range rows {
		if i == 0 || len(rec) == 0 {
			continue
		}
		done[rec[0]] = true
	}
	return done, nil
}

func formatPx(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func formatProb(p float32) string { return strconv.FormatFloat(float64(p), 'g', 6, 32) }

// FormatVector writes v as space-separated values with float32 precision.
func FormatVector(v []float32) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(x), 'g', 7, 32))
	}
	return b.String()
}
