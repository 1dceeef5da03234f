package audit

import (
	"fmt"
	"html/template"
	"io"
)

// WriteHTML writes the report as one self-contained HTML page (inline
// style, no scripts, no external resources). path names row i; thumb
// returns a data: URI of row i's thumbnail, or "" when there is none (the
// page then shows the path only). Images only appear for rows the report
// lists.
func (r *Report) WriteHTML(w io.Writer, path func(row int) string, thumb func(row int) string) error {
	if thumb == nil {
		thumb = func(int) string { return "" }
	}
	if path == nil {
		path = func(i int) string { return fmt.Sprintf("row %d", i) }
	}
	type cell struct {
		Path  string
		Thumb template.URL
	}
	mk := func(i int) cell {
		// thumbnails are data: URIs made by the caller from decoded pixels
		return cell{Path: path(i), Thumb: template.URL(thumb(i))}
	}
	type susRow struct {
		Img              cell
		Given, Suggested string
		PGiven, PSuggest float64
	}
	type dupRow struct {
		A, B   cell
		Kind   string
		Cosine float64
	}
	type outRow struct {
		Img     cell
		Nearest string
		Cosine  float64
		Z       float64
	}
	type classRow struct {
		Name  string
		Count int
		Width int
	}
	data := struct {
		R        *Report
		Classes  []classRow
		Suspects []susRow
		Dups     []dupRow
		Outliers []outRow
	}{R: r}
	mx := 1
	for _, n := range r.Balance.Counts {
		mx = max(mx, n)
	}
	for c, n := range r.Balance.Counts {
		data.Classes = append(data.Classes, classRow{r.Classes[c], n, 300 * n / mx})
	}
	for _, s := range r.Suspects {
		data.Suspects = append(data.Suspects, susRow{mk(s.Row), r.Classes[s.Given], r.Classes[s.Suggested], s.PGiven, s.PSuggest})
	}
	for _, p := range r.Duplicates {
		data.Dups = append(data.Dups, dupRow{mk(p.A), mk(p.B), p.Kind, p.Cosine})
	}
	for _, o := range r.Outliers {
		data.Outliers = append(data.Outliers, outRow{mk(o.Row), r.Classes[o.Nearest], o.Cosine, o.Score})
	}
	return htmlPage.Execute(w, data)
}

var htmlPage = template.Must(template.New("doctor").Funcs(template.FuncMap{
	"f2": func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"f4": func(v float64) string { return fmt.Sprintf("%.4f", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>headtune doctor</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:4px 8px;text-align:left;vertical-align:middle;border-bottom:1px solid #eee}
img{width:96px;height:96px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated;display:block}
.path{font:11px monospace;color:#555;max-width:14em;word-break:break-all}
.bar{background:#4a7fb5;height:12px}.note{background:#fff6d6;padding:4px 8px;margin:4px 0}
.leak{color:#b00;font-weight:bold}.cross-class{color:#a60}
</style></head><body>
<h1>headtune doctor</h1>
<p>{{.R.Rows}} images, {{len .R.Classes}} classes.
{{with .R.CV}}Cross-validation ({{.Folds}} folds): accuracy {{f4 .Accuracy.Mean}} ± {{f4 .Accuracy.Std}}, macro-F1 {{f4 .MacroF1.Mean}} ± {{f4 .MacroF1.Std}}.{{end}}</p>
{{range .R.Notes}}<div class="note">{{.}}</div>{{end}}
<h2>Classes</h2>
<table>{{range .Classes}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td><div class="bar" style="width:{{.Width}}px"></div></td></tr>{{end}}</table>
<h2>Likely mislabelled ({{.R.Counts.Suspects}})</h2>
<p>Out-of-fold predictions confidently disagree with the label (confident learning).</p>
<table><tr><th>image</th><th>labelled</th><th>looks like</th><th>p(label)</th><th>p(suggested)</th></tr>
{{range .Suspects}}<tr><td>{{if .Img.Thumb}}<img src="{{.Img.Thumb}}" alt="">{{end}}<div class="path">{{.Img.Path}}</div></td><td>{{.Given}}</td><td>{{.Suggested}}</td><td>{{f2 .PGiven}}</td><td>{{f2 .PSuggest}}</td></tr>{{end}}
</table>
<h2>Near-duplicates ({{.R.Counts.Leaks}} train/test leaks, {{.R.Counts.CrossClass}} across classes, {{.R.Counts.SameClass}} within a class)</h2>
<p>Centred cosine of the features at least {{f4 .R.DupCosine}}.</p>
<table><tr><th>kind</th><th>image</th><th>image</th><th>cosine</th></tr>
{{range .Dups}}<tr><td class="{{.Kind}}">{{.Kind}}</td><td>{{if .A.Thumb}}<img src="{{.A.Thumb}}" alt="">{{end}}<div class="path">{{.A.Path}}</div></td><td>{{if .B.Thumb}}<img src="{{.B.Thumb}}" alt="">{{end}}<div class="path">{{.B.Path}}</div></td><td>{{f4 .Cosine}}</td></tr>{{end}}
</table>
<h2>Outliers ({{.R.Counts.Outliers}})</h2>
<p>Far from every class centroid (robust z below -{{.R.OutlierZ}}).</p>
<table><tr><th>image</th><th>nearest class</th><th>cosine</th><th>z</th></tr>
{{range .Outliers}}<tr><td>{{if .Img.Thumb}}<img src="{{.Img.Thumb}}" alt="">{{end}}<div class="path">{{.Img.Path}}</div></td><td>{{.Nearest}}</td><td>{{f2 .Cosine}}</td><td>{{printf "%.1f" .Z}}</td></tr>{{end}}
</table>
</body></html>
`))
