package featcache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrClosed is returned by methods of a closed Writer.
var ErrClosed = errors.New("feature cache writer is closed")

// WriterOptions tunes OpenWriter. The zero value refuses at once when
// another writer holds the lock.
type WriterOptions struct {
	// Wait makes OpenWriter wait for the lock (serialising writers) instead
	// of failing with ErrLocked; the context passed to OpenWriter bounds the
	// wait.
	Wait bool
	// RetryDelay is the polling interval while waiting; 0 means 50 ms.
	RetryDelay time.Duration

	fs fileSystem // nil: the real file system (tests inject failures)
}

// Writer appends feature rows for one backbone Identity. It holds the
// folder's exclusive lock from OpenWriter until Close; at most one Writer
// exists per folder across all processes. A Writer is not safe for
// concurrent use; guard it with a mutex or feed it from one goroutine.
//
// Each Append is one durable commit: the rows are written and fsynced to
// features.f32 before their index records are written and fsynced to
// rows.idx. A crash at any moment leaves every earlier Append readable; a
// torn Append is invisible and dropped by the next OpenWriter. After a
// failed write the Writer refuses further appends (the error is sticky);
// what was committed before stays intact.
type Writer struct {
	fs       fileSystem
	dir      string
	id       Identity
	dim      int
	rowBytes int64
	lock     *dirLock
	data     file
	index    file

	dataSize  int64 // committed bytes of features.f32: (last row + 1) * rowBytes
	indexSize int64 // committed bytes of rows.idx
	nextRow   int64
	recs      []record // committed records (first of each key)
	table     keyTable // key -> index into recs
	count     int      // committed records

	// Reused across Append calls so steady-state appends do not allocate.
	dataBuf []byte
	recBuf  []byte
	seen    map[Key]struct{}
	newIdx  []int
	pending []record

	err    error // sticky write failure
	closed bool
}

// OpenWriter opens (creating if needed) the folder for id under root and
// takes its writer lock. If another process holds the lock it returns a
// *LockedError (errors.Is(err, ErrLocked)) naming the folder and that
// process, or with opt.Wait blocks until the lock is free or ctx is done.
// A lock left by a killed process is released by the kernel, so it never
// blocks a later writer.
//
// Opening recovers from an interrupted run: a torn index tail and data
// past the last committed row are truncated. Corruption inside the index
// (valid records after a damaged one) is refused with a message pointing at
// Repair, so that no committed work is silently discarded.
func OpenWriter(ctx context.Context, root string, id Identity, opt WriterOptions) (_ *Writer, err error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	fsys := opt.fs
	if fsys == nil {
		fsys = osFS{}
	}
	dir := Dir(root, id)
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, opError("create feature cache folder", dir, err)
	}
	lk, err := acquireLock(ctx, dir, opt.Wait, opt.RetryDelay)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		fs: fsys, dir: dir, id: id, dim: id.Dim, rowBytes: int64(id.Dim) * 4,
		lock: lk, seen: make(map[Key]struct{}),
	}
	defer func() {
		if err != nil {
			w.closeFiles()
			lk.release()
		}
	}()
	if err := w.init(); err != nil {
		return nil, err
	}
	return w, nil
}

// init brings the folder to a clean committed state; the lock is held.
func (w *Writer) init() error {
	created := false
	// backbone.json: written once; afterwards it must describe w.id.
	m, err := readManifest(w.dir)
	switch {
	case err == nil:
		if err := checkManifest(w.dir, m, w.id); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		data, merr := marshalManifest(newManifest(w.id))
		if merr != nil {
			return merr
		}
		if err := writeFileAtomic(w.fs, filepath.Join(w.dir, manifestName), data, 0o644); err != nil {
			return err
		}
		created = true
	default:
		return fmt.Errorf("%w; the folder's identity is unknown, delete %s to start over", err, w.dir)
	}

	// rows.idx: created atomically with its header, so it is never empty.
	indexPath := filepath.Join(w.dir, indexName)
	if _, err := os.Stat(indexPath); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(w.fs, indexPath, encodeHeader(w.dim), 0o644); err != nil {
			return err
		}
		created = true
	}
	if w.index, err = w.fs.OpenFile(indexPath, os.O_RDWR, 0); err != nil {
		return opError("open", indexPath, err)
	}
	raw, err := readAllAt(w.index)
	if err != nil {
		return opError("read", indexPath, err)
	}
	scan, err := parseIndex(raw, nil)
	if err != nil {
		return fmt.Errorf("read %s: %w; run cache repair", indexPath, err)
	}
	if scan.dim != w.dim {
		return fmt.Errorf("read %s: dimension %d, backbone.json says %d; run cache repair", indexPath, scan.dim, w.dim)
	}
	if scan.corrupt() {
		return fmt.Errorf("read %s: %s at record %d with %d intact records after it; run cache repair",
			indexPath, scan.badReason, len(scan.recs), scan.laterValid)
	}
	if scan.tail > 0 { // torn append from an interrupted run
		if err := w.index.Truncate(scan.validEnd); err != nil {
			return opError("truncate", indexPath, err)
		}
		if err := w.index.Sync(); err != nil {
			return opError("sync", indexPath, err)
		}
	}
	w.indexSize = scan.validEnd
	if n := len(scan.recs); n > 0 {
		w.nextRow = scan.recs[n-1].row + 1
	}
	w.dataSize = w.nextRow * w.rowBytes

	// features.f32: drop rows written after the last commit.
	dataPath := filepath.Join(w.dir, dataName)
	if w.data, err = w.fs.OpenFile(dataPath, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return opError("open", dataPath, err)
	}
	st, err := w.data.Stat()
	if err != nil {
		return opError("stat", dataPath, err)
	}
	switch size := st.Size(); {
	case size < w.dataSize:
		return fmt.Errorf("read %s: %d bytes but the index commits %d rows of %d bytes; run cache repair",
			dataPath, size, w.nextRow, w.rowBytes)
	case size > w.dataSize:
		if err := w.data.Truncate(w.dataSize); err != nil {
			return opError("truncate", dataPath, err)
		}
		if err := w.data.Sync(); err != nil {
			return opError("sync", dataPath, err)
		}
	}
	if created {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return opError("sync folder", w.dir, err)
		}
	}

	w.recs = scan.recs
	w.table = newKeyTable(len(scan.recs))
	for i := range w.recs {
		if _, dup := w.table.find(w.recs, &w.recs[i].key); !dup { // first wins
			w.table.add(w.recs, i)
		}
	}
	w.count = len(scan.recs)
	return nil
}

// Dir returns the identity's folder (root/<first 16 hex digits of the ID>).
func (w *Writer) Dir() string { return w.dir }

// Dim returns D, the number of float32 values per row.
func (w *Writer) Dim() int { return w.dim }

// Len returns the number of committed feature vectors.
func (w *Writer) Len() int { return w.count }

// Has reports whether features for k are committed.
func (w *Writer) Has(k Key) bool {
	_, ok := w.table.find(w.recs, &k)
	return ok
}

// Lookup returns the row of k's committed features.
func (w *Writer) Lookup(k Key) (row int, ok bool) {
	i, ok := w.table.find(w.recs, &k)
	if !ok {
		return 0, false
	}
	return int(w.recs[i].row), true
}

// Append commits one batch: keys[i]'s feature vector is
// rows[i*D:(i+1)*D]. Keys already committed, and repeats within the batch,
// are skipped (the first vector wins). rows is read, not retained. On
// return without error the batch is durable (fsynced). On error nothing of
// the batch is committed, earlier batches are intact, and the Writer
// refuses further appends: close it and open a new one to resume.
func (w *Writer) Append(keys []Key, rows []float32) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if len(rows) != len(keys)*w.dim {
		return fmt.Errorf("append to feature cache %s: %d keys need %d floats (D=%d), got %d",
			w.dir, len(keys), len(keys)*w.dim, w.dim, len(rows))
	}
	clear(w.seen)
	w.newIdx = w.newIdx[:0]
	w.pending = w.pending[:0]
	if w.count+len(keys) > maxRecords {
		return fmt.Errorf("append to feature cache %s: more than %d rows in one cache folder", w.dir, maxRecords)
	}
	for i := range keys {
		k := keys[i]
		if w.Has(k) {
			continue
		}
		if _, ok := w.seen[k]; ok {
			continue
		}
		w.seen[k] = struct{}{}
		w.newIdx = append(w.newIdx, i)
	}
	n := len(w.newIdx)
	if n == 0 {
		return nil
	}
	need := int64(n) * w.rowBytes
	if int64(cap(w.dataBuf)) < need {
		w.dataBuf = make([]byte, need)
	}
	data := w.dataBuf[:need]
	if cap(w.recBuf) < n*RecordSize {
		w.recBuf = make([]byte, n*RecordSize)
	}
	recs := w.recBuf[:n*RecordSize]
	for j, i := range w.newIdx {
		dst := data[int64(j)*w.rowBytes : int64(j+1)*w.rowBytes]
		putF32s(dst, rows[i*w.dim:(i+1)*w.dim])
		w.pending = append(w.pending, record{key: keys[i], row: w.nextRow + int64(j), crc: crc32c(dst)})
		putRecord(recs[j*RecordSize:], w.pending[j])
	}

	if err := w.commit(data, recs); err != nil {
		w.err = fmt.Errorf("append %d rows to feature cache %s: %w (rows committed before are intact)", n, w.dir, err)
		return w.err
	}
	for _, r := range w.pending {
		w.recs = append(w.recs, r)
		w.table.add(w.recs, len(w.recs)-1)
	}
	w.nextRow += int64(n)
	w.count += n
	w.dataSize += need
	w.indexSize += int64(len(recs))
	return nil
}

// commit writes rows then records, each followed by fsync. On failure it
// rolls both files back to the committed sizes (best effort; the next open
// does the same).
func (w *Writer) commit(data, recs []byte) (err error) {
	defer func() {
		if err != nil {
			_ = w.index.Truncate(w.indexSize)
			_ = w.data.Truncate(w.dataSize)
			_ = w.index.Sync()
			_ = w.data.Sync()
		}
	}()
	if err := writeFull(w.data, data, w.dataSize); err != nil {
		return opError("write", dataName, err)
	}
	if err := w.data.Sync(); err != nil {
		return opError("sync", dataName, err)
	}
	if err := writeFull(w.index, recs, w.indexSize); err != nil {
		return opError("write", indexName, err)
	}
	if err := w.index.Sync(); err != nil {
		return opError("sync", indexName, err)
	}
	return nil
}

// Err returns the write error that stopped the Writer, or nil.
func (w *Writer) Err() error { return w.err }

// Close releases the files and the lock. Every successful Append is already
// durable, so Close has nothing to flush. It returns the sticky write
// error, if any, so a caller that ignored Append's error still sees it.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	cerr := w.closeFiles()
	if err := w.lock.release(); err != nil && cerr == nil {
		cerr = opError("unlock", filepath.Join(w.dir, lockName), err)
	}
	if w.err != nil {
		return w.err
	}
	return cerr
}

func (w *Writer) closeFiles() error {
	var first error
	for _, f := range []struct {
		f    file
		name string
	}{{w.data, dataName}, {w.index, indexName}} {
		if f.f == nil {
			continue
		}
		if err := f.f.Close(); err != nil && first == nil {
			first = opError("close", filepath.Join(w.dir, f.name), err)
		}
	}
	w.data, w.index = nil, nil
	return first
}

// readAllAt reads a whole file through ReaderAt.
func readAllAt(f file) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	n, err := f.ReadAt(buf, 0)
	if n == len(buf) {
		return buf, nil
	}
	return buf[:n], err
}
