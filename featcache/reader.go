package featcache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// ErrCorrupt is matched (errors.Is) by errors about cache content that
// fails its checksums or contradicts itself. Repair drops such content.
var ErrCorrupt = errors.New("feature cache is corrupt")

// Reader is a read-only snapshot of one identity's features: the rows
// committed when Open ran. It takes no lock, so it may be opened while a
// Writer appends (it does not see later appends). Reader is safe for
// concurrent use by multiple goroutines.
type Reader struct {
	dir      string
	id       Identity
	dim      int
	rowBytes int64
	data     *os.File
	recs     []record  // committed records, rows strictly increasing
	byKey    keyTable  // key -> index into recs (first wins)
	bufPool  sync.Pool // []byte row buffers for big-endian hosts
}

// Open opens a snapshot of the features cached for id under root. If
// nothing was ever cached for id the error matches fs.ErrNotExist.
func Open(root string, id Identity) (*Reader, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	dir := Dir(root, id)
	m, err := readManifest(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no features cached for backbone %s in %s: %w", id.ID()[:16], root, fs.ErrNotExist)
		}
		return nil, err
	}
	if err := checkManifest(dir, m, id); err != nil {
		return nil, err
	}
	return openDir(dir, m)
}

// OpenDir opens a snapshot of the identity folder dir (as listed by List),
// taking the identity from its backbone.json.
func OpenDir(dir string) (*Reader, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	return openDir(dir, m)
}

func openDir(dir string, m manifest) (*Reader, error) {
	id := m.identity()
	indexPath := filepath.Join(dir, indexName)
	raw, err := os.ReadFile(indexPath)
	if errors.Is(err, fs.ErrNotExist) {
		// A writer was interrupted between creating backbone.json and
		// rows.idx: nothing is committed yet.
		raw, err = encodeHeader(id.Dim), nil
	}
	if err != nil {
		return nil, opError("read", indexPath, err)
	}
	scan, err := parseIndex(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w; run cache repair", indexPath, ErrCorrupt, err)
	}
	if scan.dim != id.Dim {
		return nil, fmt.Errorf("read %s: %w: dimension %d, backbone.json says %d; run cache repair", indexPath, ErrCorrupt, scan.dim, id.Dim)
	}
	if scan.corrupt() {
		return nil, fmt.Errorf("read %s: %w: %s at record %d with %d intact records after it; run cache repair",
			indexPath, ErrCorrupt, scan.badReason, len(scan.recs), scan.laterValid)
	}
	// A torn tail is an append in flight (or interrupted): not yet committed.
	dataPath := filepath.Join(dir, dataName)
	data, err := os.Open(dataPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && len(scan.recs) == 0 {
			data = nil // created by the writer right after the index
		} else {
			return nil, opError("open", dataPath, err)
		}
	}
	r := &Reader{dir: dir, id: id, dim: id.Dim, rowBytes: int64(id.Dim) * 4, data: data, recs: scan.recs}
	if n := len(scan.recs); n > 0 {
		st, err := data.Stat()
		if err != nil {
			data.Close()
			return nil, opError("stat", dataPath, err)
		}
		if need := (scan.recs[n-1].row + 1) * r.rowBytes; st.Size() < need {
			data.Close()
			return nil, fmt.Errorf("read %s: %w: %d bytes but the index commits rows up to %d (%d bytes); run cache repair",
				dataPath, ErrCorrupt, st.Size(), scan.recs[n-1].row, need)
		}
	}
	if len(scan.recs) > maxRecords {
		data.Close()
		return nil, fmt.Errorf("read %s: %d records, more than the %d one cache folder supports", indexPath, len(scan.recs), maxRecords)
	}
	r.byKey = newKeyTable(len(scan.recs))
	for i := range scan.recs {
		if _, dup := r.byKey.find(scan.recs, &scan.recs[i].key); !dup {
			r.byKey.add(scan.recs, i)
		}
	}
	r.bufPool.New = func() any { b := make([]byte, r.rowBytes); return &b }
	return r, nil
}

// Dir returns the identity's folder.
func (r *Reader) Dir() string { return r.dir }

// Identity returns the backbone identity recorded in backbone.json.
func (r *Reader) Identity() Identity { return r.id }

// Dim returns D, the number of float32 values per row.
func (r *Reader) Dim() int { return r.dim }

// Len returns the number of committed feature vectors in the snapshot.
func (r *Reader) Len() int { return len(r.recs) }

// Lookup returns the row holding k's features, in O(1).
func (r *Reader) Lookup(k Key) (row int, ok bool) {
	i, ok := r.byKey.find(r.recs, &k)
	if !ok {
		return 0, false
	}
	return int(r.recs[i].row), true
}

// Row copies the feature vector stored at row into dst, which must have
// length Dim(). It checks the row's CRC-32C and fails with an error
// matching ErrCorrupt on mismatch. It does not allocate on little-endian
// hosts.
func (r *Reader) Row(row int, dst []float32) error {
	if len(dst) != r.dim {
		return fmt.Errorf("read row %d of %s: destination has %d floats, want %d", row, r.dir, len(dst), r.dim)
	}
	if r.data == nil {
		return fmt.Errorf("read row %d of %s: reader is closed", row, r.dir)
	}
	i := r.recIndex(int64(row))
	if i < 0 {
		return fmt.Errorf("read row %d of %s: no committed row with that number (%d rows)", row, r.dir, len(r.recs))
	}
	var b []byte
	var pooled *[]byte
	if littleEndian {
		b = f32Bytes(dst)
	} else {
		pooled = r.bufPool.Get().(*[]byte)
		defer r.bufPool.Put(pooled)
		b = *pooled
	}
	n, err := r.data.ReadAt(b, int64(row)*r.rowBytes)
	if n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return opError("read row "+fmt.Sprint(row)+" of", filepath.Join(r.dir, dataName), err)
	}
	if got, want := crc32c(b), r.recs[i].crc; got != want {
		return fmt.Errorf("read row %d of %s: %w: checksum %08x, index says %08x; run cache repair",
			row, filepath.Join(r.dir, dataName), ErrCorrupt, got, want)
	}
	if littleEndian {
		return nil
	}
	for j := range dst {
		dst[j] = f32FromLE(b[4*j:])
	}
	return nil
}

// Get copies k's feature vector into dst (length Dim()); ok is false when
// k is not cached.
func (r *Reader) Get(k Key, dst []float32) (ok bool, err error) {
	row, ok := r.Lookup(k)
	if !ok {
		return false, nil
	}
	return true, r.Row(row, dst)
}

// recIndex finds the record of a row: rows equal record positions unless
// Repair dropped records, so try that first, then binary search.
func (r *Reader) recIndex(row int64) int {
	if row < 0 {
		return -1
	}
	if row < int64(len(r.recs)) && r.recs[row].row == row {
		return int(row)
	}
	i := sort.Search(len(r.recs), func(i int) bool { return r.recs[i].row >= row })
	if i < len(r.recs) && r.recs[i].row == row {
		return i
	}
	return -1
}

// Close releases the data file. Rows can no longer be read afterwards; do
// not call Close concurrently with Row.
func (r *Reader) Close() error {
	if r.data == nil {
		return nil
	}
	err := r.data.Close()
	r.data = nil
	if err != nil {
		return opError("close", filepath.Join(r.dir, dataName), err)
	}
	return nil
}
