package featcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// VerifyReport describes the state of one identity folder. Problems lists
// what cannot be trusted; Notes lists harmless leftovers of an interrupted
// run (a torn index append, data rows written but not committed), which the
// next writer drops on its own.
type VerifyReport struct {
	Dir      string
	ID       string // full BackboneID from backbone.json ("" if unreadable)
	Dim      int    // D, floats per row (0 if unknown)
	Records  int    // committed index records
	Verified int    // committed rows whose data checksum matched

	BadRows    []int // rows whose data checksum fails (first 100)
	Duplicates int   // records repeating an earlier key (the first wins)

	UncommittedIndexBytes int64 // torn tail of rows.idx
	UncommittedDataBytes  int64 // features.f32 bytes past the last committed row

	Problems []string
	Notes    []string
}

// OK reports whether the folder has no problems (notes are fine).
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

func (r *VerifyReport) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

func (r *VerifyReport) note(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

// maxBadRowsListed caps VerifyReport.BadRows.
const maxBadRowsListed = 100

// Verify checks the identity folder dir without modifying it and without
// taking the lock (a running writer shows up at most as notes): backbone.json
// parses and matches the index header, index records are intact and ordered,
// every committed row lies inside features.f32 and matches its CRC-32C, and
// no key repeats. Content problems go into the report; the error is for
// failures that prevent checking (folder missing, I/O errors). Cost: one
// sequential read of the data file.
func Verify(dir string) (*VerifyReport, error) {
	rep := &VerifyReport{Dir: dir}
	if st, err := os.Stat(dir); err != nil {
		return nil, opError("verify", dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("verify %s: not a folder", dir)
	}
	if uninitialised(dir) {
		// A writer was killed while creating the folder: nothing was ever
		// committed here, and the next writer completes the creation.
		rep.note("%s has no %s or %s yet (creation interrupted): empty", dir, manifestName, indexName)
		return rep, nil
	}
	m, err := readManifest(dir)
	if err != nil {
		rep.problem("%v", err)
	} else {
		rep.ID, rep.Dim = m.ID, m.Dim
	}

	indexPath := filepath.Join(dir, indexName)
	raw, err := os.ReadFile(indexPath)
	if errors.Is(err, fs.ErrNotExist) && rep.Dim > 0 {
		// Creation was interrupted before rows.idx: an empty cache.
		rep.note("%s is missing: nothing committed yet", indexPath)
		raw, err = encodeHeader(rep.Dim), nil
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			rep.problem("%s is missing", indexPath)
			return rep, nil
		}
		return nil, opError("read", indexPath, err)
	}
	scan, err := parseIndex(raw, nil)
	if err != nil {
		rep.problem("%s: %v", indexPath, err)
		return rep, nil
	}
	if rep.Dim == 0 {
		rep.Dim = scan.dim
	} else if scan.dim != rep.Dim {
		rep.problem("%s: dimension %d, backbone.json says %d", indexPath, scan.dim, rep.Dim)
		return rep, nil
	}
	rep.Records = len(scan.recs)
	switch {
	case scan.corrupt():
		rep.problem("%s: %s at record %d, %d intact records after it are unreachable", indexPath, scan.badReason, len(scan.recs), scan.laterValid)
	case scan.torn():
		rep.UncommittedIndexBytes = scan.tail
		rep.note("%s: %d-byte uncommitted tail (interrupted append: %s)", indexPath, scan.tail, scan.badReason)
	}

	seen := make(map[Key]struct{}, len(scan.recs))
	for _, r := range scan.recs {
		if _, dup := seen[r.key]; dup {
			rep.Duplicates++
		}
		seen[r.key] = struct{}{}
	}
	if rep.Duplicates > 0 {
		rep.problem("%s: %d records repeat an earlier hash", indexPath, rep.Duplicates)
	}

	dataPath := filepath.Join(dir, dataName)
	f, err := os.Open(dataPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if len(scan.recs) > 0 {
				rep.problem("%s is missing but the index commits %d rows", dataPath, len(scan.recs))
			}
			return rep, nil
		}
		return nil, opError("open", dataPath, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, opError("stat", dataPath, err)
	}
	size, rowBytes := st.Size(), int64(rep.Dim)*4
	var committed int64
	if n := len(scan.recs); n > 0 {
		committed = (scan.recs[n-1].row + 1) * rowBytes
	}
	if size > committed {
		rep.UncommittedDataBytes = size - committed
		rep.note("%s: %d bytes past the last committed row (interrupted append)", dataPath, size-committed)
	}
	outside := 0
	bad := 0
	buf := make([]byte, rowBytes)
	for _, r := range scan.recs {
		off := r.row * rowBytes
		if off+rowBytes > size {
			outside++
			continue
		}
		if n, err := f.ReadAt(buf, off); n < len(buf) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, opError(fmt.Sprintf("read row %d of", r.row), dataPath, err)
		}
		if crc32c(buf) != r.crc {
			bad++
			if len(rep.BadRows) < maxBadRowsListed {
				rep.BadRows = append(rep.BadRows, int(r.row))
			}
			continue
		}
		rep.Verified++
	}
	if outside > 0 {
		rep.problem("%s: %d committed rows lie past the end of the file (%d bytes)", dataPath, outside, size)
	}
	if bad > 0 {
		rep.problem("%s: %d rows fail their checksum (first: row %d)", dataPath, bad, rep.BadRows[0])
	}
	return rep, nil
}

// RepairReport says what Repair kept and dropped.
type RepairReport struct {
	Dir  string
	Kept int // records kept

	DroppedBadRecord  int // record checksum failed (torn or corrupt)
	DroppedOutOfOrder int // row number not after the previous kept row
	DroppedOutOfRange int // row past the end of features.f32
	DroppedBadRow     int // row data fails its checksum: will be recomputed
	DroppedDuplicate  int // key already kept

	IndexBytesRemoved int64 // rows.idx shrank by this much
	DataBytesRemoved  int64 // features.f32 tail truncated
}

// Dropped returns the number of records dropped for any reason.
func (r *RepairReport) Dropped() int {
	return r.DroppedBadRecord + r.DroppedOutOfOrder + r.DroppedOutOfRange + r.DroppedBadRow + r.DroppedDuplicate
}

// Repair makes the identity folder dir trustworthy again by dropping what
// fails verification: it scans every record slot of rows.idx, keeps the
// records whose own checksum passes, whose row follows the previous kept
// one, lies inside features.f32 and matches its data checksum, and whose
// key is new; it then atomically replaces rows.idx with a fresh header and
// the kept records and truncates features.f32 after the last kept row.
// Dropped rows are simply recomputed by the next extract run. Rows are never
// moved, so a kept row keeps its number.
//
// Repair takes the writer lock and fails with ErrLocked while a writer
// runs. It cannot repair an unreadable backbone.json (the folder's identity
// is then unknown); delete the folder in that case.
func Repair(dir string) (*RepairReport, error) {
	lk, err := acquireLock(context.Background(), dir, false, 0)
	if err != nil {
		return nil, err
	}
	defer lk.release()
	return repairLocked(osFS{}, dir)
}

func repairLocked(fsys fileSystem, dir string) (*RepairReport, error) {
	if uninitialised(dir) {
		return &RepairReport{Dir: dir}, nil // nothing committed, nothing to drop
	}
	m, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot repair %s: %w; delete the folder to start over", dir, err)
	}
	rep := &RepairReport{Dir: dir}
	rowBytes := int64(m.Dim) * 4
	indexPath := filepath.Join(dir, indexName)
	raw, err := os.ReadFile(indexPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, opError("read", indexPath, err)
	}
	dataPath := filepath.Join(dir, dataName)
	data, err := fsys.OpenFile(dataPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, opError("open", dataPath, err)
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return nil, opError("stat", dataPath, err)
	}
	size := st.Size()

	out := encodeHeader(m.Dim)
	seen := make(map[Key]struct{})
	buf := make([]byte, rowBytes)
	last := int64(-1)
	for off := RecordSize; off+RecordSize <= len(raw); off += RecordSize {
		r, ok := decodeRecord(raw[off:])
		switch {
		case !ok:
			rep.DroppedBadRecord++
			continue
		case r.row <= last:
			rep.DroppedOutOfOrder++
			continue
		case (r.row+1)*rowBytes > size:
			rep.DroppedOutOfRange++
			continue
		}
		if _, dup := seen[r.key]; dup {
			rep.DroppedDuplicate++
			continue
		}
		if n, err := data.ReadAt(buf, r.row*rowBytes); n < len(buf) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, opError(fmt.Sprintf("read row %d of", r.row), dataPath, err)
		}
		if crc32c(buf) != r.crc {
			rep.DroppedBadRow++
			continue
		}
		seen[r.key] = struct{}{}
		last = r.row
		var rec [RecordSize]byte
		putRecord(rec[:], r)
		out = append(out, rec[:]...)
		rep.Kept++
	}
	if len(raw) > RecordSize && (len(raw)-RecordSize)%RecordSize != 0 {
		rep.DroppedBadRecord++ // partial record at the end
	}
	if int64(len(out)) != int64(len(raw)) || rep.Dropped() > 0 {
		if err := writeFileAtomic(fsys, indexPath, out, 0o644); err != nil {
			return nil, err
		}
	}
	rep.IndexBytesRemoved = max(0, int64(len(raw)-len(out)))
	if keep := (last + 1) * rowBytes; size > keep {
		if err := data.Truncate(keep); err != nil {
			return nil, opError("truncate", dataPath, err)
		}
		if err := data.Sync(); err != nil {
			return nil, opError("sync", dataPath, err)
		}
		rep.DataBytesRemoved = size - keep
	}
	return rep, nil
}

// Info summarises one identity folder for listings.
type Info struct {
	Dir       string
	ID        string   // full BackboneID
	Identity  Identity // from backbone.json
	Rows      int      // committed feature vectors
	DataBytes int64    // size of features.f32
	Views     []string // view names
	Err       error    // why the folder could not be read, if it could not
}

// List describes every identity folder under root, sorted by folder name.
// A missing root yields an empty list. Folders that fail to open are listed
// with Err set rather than failing the whole listing.
func List(root string) ([]Info, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, opError("list", root, err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
			continue // not a cache folder
		}
		info := Info{Dir: dir}
		r, err := OpenDir(dir)
		if err != nil {
			info.Err = err
			out = append(out, info)
			continue
		}
		info.Identity, info.ID, info.Rows = r.Identity(), r.Identity().ID(), r.Len()
		if st, err := os.Stat(filepath.Join(dir, dataName)); err == nil {
			info.DataBytes = st.Size()
		}
		r.Close()
		if vs, err := os.ReadDir(filepath.Join(dir, viewsDir)); err == nil {
			for _, v := range vs {
				if n := v.Name(); !v.IsDir() && filepath.Ext(n) == ".csv" && n[0] != '.' {
					info.Views = append(info.Views, n[:len(n)-4])
				}
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

// DefaultDir returns the default cache root: $HEADTUNE_CACHE_DIR if set,
// else headtune/features under the user cache folder ($XDG_CACHE_HOME, or
// ~/.cache on Linux; ~/Library/Caches on macOS). The folder is not created.
func DefaultDir() (string, error) {
	if d := os.Getenv("HEADTUNE_CACHE_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("default feature cache folder: %w (choose one with --cache)", err)
	}
	return filepath.Join(base, "headtune", "features"), nil
}

// uninitialised reports whether dir lacks both backbone.json and rows.idx:
// a folder whose creation was interrupted before anything was committed.
func uninitialised(dir string) bool {
	_, errM := os.Stat(filepath.Join(dir, manifestName))
	_, errI := os.Stat(filepath.Join(dir, indexName))
	return errors.Is(errM, fs.ErrNotExist) && errors.Is(errI, fs.ErrNotExist)
}
