package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/pipeline"
)

// CacheListOptions configure CacheList.
type CacheListOptions struct {
	Env
}

// CacheListResult lists the feature cache's backbone folders.
type CacheListResult struct {
	Root    string           `json:"root"`
	Folders []featcache.Info `json:"folders"`
}

// CacheList lists the backbones with cached features.
func CacheList(ctx context.Context, opt CacheListOptions) (*CacheListResult, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	infos, err := featcache.List(root)
	if err != nil {
		return nil, err
	}
	return &CacheListResult{Root: root, Folders: infos}, nil
}

// WriteText writes one line per backbone folder, then the root.
func (r *CacheListResult) WriteText(w io.Writer) error {
	for _, in := range r.Folders {
		if in.Err != nil {
			fmt.Fprintf(w, "%s  unreadable: %v\n", in.Dir, in.Err)
			continue
		}
		fmt.Fprintf(w, "%s  %d rows x %d (%s of float32)  tensor %s  model %.12s  views %s\n",
			in.Dir, in.Rows, in.Identity.Dim, bytesize.Format(in.DataBytes), in.Identity.FeatureTensor, in.Identity.ModelHash, strings.Join(in.Views, ", "))
	}
	_, err := fmt.Fprintf(w, "cache: %s\n", r.Root)
	return err
}

// CacheCheckOptions configure CacheCheck.
type CacheCheckOptions struct {
	Env
	// Dirs are the backbone folders to check; empty: all under the cache
	// root.
	Dirs []string
	// Repair drops rows that cannot be trusted (the next extract
	// recomputes them) instead of only reporting them.
	Repair bool
}

// CacheCheckResult reports a verification or repair, one report per folder
// in Dirs order.
type CacheCheckResult struct {
	Dirs     []string                  `json:"dirs"`
	Verified []*featcache.VerifyReport `json:"verified,omitempty"`
	Repaired []*featcache.RepairReport `json:"repaired,omitempty"`
	Damaged  int                       `json:"damaged"` // folders that failed verification
}

// WriteText writes one line per folder: what repair kept and dropped, or
// whether verification found it intact.
func (r *CacheCheckResult) WriteText(w io.Writer) error {
	for i, rep := range r.Repaired {
		fmt.Fprintf(w, "%s: kept %d rows, dropped %d (bad record %d, out of order %d, out of range %d, bad row data %d, duplicate %d); the next extract recomputes dropped rows\n",
			r.Dirs[i], rep.Kept, rep.Dropped(), rep.DroppedBadRecord, rep.DroppedOutOfOrder, rep.DroppedOutOfRange, rep.DroppedBadRow, rep.DroppedDuplicate)
	}
	for i, rep := range r.Verified {
		status := "ok"
		if !rep.OK() {
			status = "DAMAGED: " + strings.Join(rep.Problems, "; ")
		}
		if _, err := fmt.Fprintf(w, "%s: %s\n", r.Dirs[i], status); err != nil {
			return err
		}
	}
	return nil
}

// ErrDamaged is wrapped by CacheCheck's error when verification found
// damaged folders.
var ErrDamaged = errors.New("damaged feature cache")

// CacheCheck verifies every cached row against its checksum and the index
// against the data, or (Repair) drops the rows that fail.
func CacheCheck(ctx context.Context, opt CacheCheckOptions) (*CacheCheckResult, error) {
	dirs := opt.Dirs
	if len(dirs) == 0 {
		root, err := opt.CacheRoot()
		if err != nil {
			return nil, err
		}
		infos, err := featcache.List(root)
		if err != nil {
			return nil, err
		}
		for _, in := range infos {
			dirs = append(dirs, in.Dir)
		}
		if len(dirs) == 0 {
			return nil, fmt.Errorf("no cached features in %s", root)
		}
	}
	res := &CacheCheckResult{Dirs: dirs}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if opt.Repair {
			rep, err := featcache.Repair(d)
			if err != nil {
				return res, err
			}
			res.Repaired = append(res.Repaired, rep)
			continue
		}
		rep, err := featcache.Verify(d)
		if err != nil {
			return res, err
		}
		res.Verified = append(res.Verified, rep)
		if !rep.OK() {
			res.Damaged++
		}
	}
	if res.Damaged > 0 {
		return res, fmt.Errorf("%d of %d cache folders: %w: run `headtune cache repair`", res.Damaged, len(dirs), ErrDamaged)
	}
	return res, nil
}

// NPYOptions configure CacheExportNPY.
type NPYOptions struct {
	Env
	// View is the dataset view; empty: the cache's latest extraction (or,
	// with Head, the view the head was trained on).
	View string
	// Out is the folder to write; empty: "features-npy".
	Out string
	// Head, when set, takes the split the head recorded, so the files
	// hold exactly its training, validation and test rows. Otherwise Split
	// draws one as Train would.
	Head  string
	Split SplitOptions
}

// NPYResult reports an export of features to NumPy files.
type NPYResult struct {
	Out                   string   `json:"out"`
	Train, Val, Test, Dim int      `json:"-"`
	Classes               []string `json:"classes"`
}

// CacheExportNPY writes a view's features and labels as NumPy files,
// {X,y}{train,val,test}.npy, and classes.txt (label i is line i+1), for
// comparing with other tools on identical inputs.
func CacheExportNPY(ctx context.Context, opt NPYOptions) (*NPYResult, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	view := opt.View
	var split *head.SplitInfo
	if opt.Head != "" {
		m, err := LoadHead(opt.Head)
		if err != nil {
			return nil, err
		}
		if m.Train.Split == nil {
			return nil, fmt.Errorf("head %s records no split (trained by an older headtune): pass the fractions and seed instead", opt.Head)
		}
		if view == "" {
			view = m.Train.Split.View
		}
		split = m.Train.Split
	}
	f, err := pipeline.LoadFeatures(root, view)
	if err != nil {
		return nil, err
	}
	if split == nil {
		rec, err := Split(f, opt.Split)
		if err != nil {
			return nil, err
		}
		split = rec
	} else if err := checkSplit(split, f); err != nil {
		return nil, err
	}
	tr, va, te := Rows(split)
	out := opt.Out
	if out == "" {
		out = "features-npy"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	for _, part := range []struct {
		name string
		rows []int
	}{{"train", tr}, {"val", va}, {"test", te}} {
		X := make([]float32, 0, len(part.rows)*f.D)
		y := make([]int32, 0, len(part.rows))
		for _, r := range part.rows {
			X = append(X, f.X[r*f.D:(r+1)*f.D]...)
			y = append(y, f.Labels[r])
		}
		if err := featcache.WriteNPYFloat32(filepath.Join(out, "X"+part.name+".npy"), X, len(part.rows), f.D); err != nil {
			return nil, err
		}
		if err := featcache.WriteNPYInt32(filepath.Join(out, "y"+part.name+".npy"), y); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "classes.txt"), []byte(strings.Join(f.Classes, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &NPYResult{Out: out, Train: len(tr), Val: len(va), Test: len(te), Dim: f.D, Classes: f.Classes}, nil
}
