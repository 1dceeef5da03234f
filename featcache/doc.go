// Package featcache stores the feature vectors a frozen backbone computes
// for images, so that re-running an extraction only processes new or
// changed files.
//
// # Addressing
//
// A feature vector is addressed by two keys: the image's content hash (Key,
// SHA-256 of the file bytes, so a renamed file keeps its features) and the
// backbone identity (Identity: model hash + feature tensor + preprocessing
// spec, hashed into the 64-hex-digit BackboneID). Each identity has its own
// folder under the cache root, named by the first 16 hex digits of its ID:
//
//	<root>/<id16>/backbone.json   identity, written once, atomically
//	<root>/<id16>/features.f32    float32 rows, append-only
//	<root>/<id16>/rows.idx        index records, append-only
//	<root>/<id16>/lock            writer lock (holds the writer's PID)
//	<root>/<id16>/views/<name>.csv  dataset views, replaced atomically
//
// The root defaults to DefaultDir(): $HEADTUNE_CACHE_DIR, else
// $XDG_CACHE_HOME/headtune/features (~/.cache/headtune/features on Linux);
// the CLI's --cache DIR chooses another.
//
// # On-disk format
//
// features.f32 is a headerless array of little-endian float32, D values
// per row (D is "dim" in backbone.json). Rows are never rewritten or moved.
//
// rows.idx starts with a 48-byte header (magic "HTFCIDX1", version u32 = 1,
// dim u32, zero padding, CRC-32C of the first 44 bytes in the last 4) and
// continues with 48-byte records, all little-endian:
//
//	offset  size  field
//	0       32    key: SHA-256 of the image file
//	32      8     row: u64 row number in features.f32
//	40      4     row_crc: CRC-32C (Castagnoli) of the row's 4*D bytes
//	44      4     crc: CRC-32C of bytes 0..43 of this record
//
// Row numbers strictly increase along the index. A key appears at most
// once (if a damaged cache repeats one, the first record wins).
//
// # Commit protocol and crash safety
//
// One Writer.Append is one commit: write the batch's rows at the end of
// features.f32, fsync it, append the batch's records to rows.idx, fsync
// it. A record is committed when it and everything before it in rows.idx
// pass their checksums; readers stop at the first record that does not (a
// torn write after kill -9 or power loss) and ignore data past the last
// committed row. The next OpenWriter truncates both tails and resumes, so
// at most the batch in flight is recomputed. Writers hold an exclusive
// flock(2) on the lock file: a second writer is refused with ErrLocked
// naming the PID (or waits, with WriterOptions.Wait); the kernel drops the
// lock when its process dies, so stale locks need no cleanup. flock may not
// work across NFS; keep the cache on a local disk. Readers take no lock.
//
// A failed write or fsync (disk full, I/O error) stops the Writer with an
// error naming the file and cause; earlier commits remain intact. Verify
// checks a folder (manifest, index checksums and order, every row's
// checksum, duplicates) without changing it; Repair rewrites the index
// atomically keeping only trustworthy records, so dropped rows are simply
// recomputed by the next run.
//
// # Dataset views
//
// A view (WriteView, ReadView) is a CSV file with the header
// path,label,split,hash,row listing the files of one dataset as of the
// latest extract run; files removed from the dataset drop out of it while
// their rows stay cached. LoadMatrix gathers a view's rows into an N x D
// matrix by hash.
//
// # Reading from Python
//
// With numpy only (dir is one identity folder):
//
//	import csv, json, numpy as np
//	D = json.load(open(f"{dir}/backbone.json"))["dim"]
//	idx = np.fromfile(f"{dir}/rows.idx", offset=48, dtype=np.dtype([
//	    ("key", "V32"), ("row", "<u8"), ("row_crc", "<u4"), ("crc", "<u4")]))
//	n = int(idx["row"].max()) + 1 if len(idx) else 0   # committed rows
//	X = np.fromfile(f"{dir}/features.f32", dtype="<f4", count=n * D).reshape(n, D)
//	row_of = {bytes(k).hex(): int(r) for k, r in zip(idx["key"], idx["row"])}
//	view = list(csv.DictReader(open(f"{dir}/views/train.csv", newline="")))
//	Xtrain = X[[int(e["row"]) for e in view]]
//	ytrain = [e["label"] for e in view]
//
// While a writer runs, or after a crash, rows.idx may end in a partial
// record (numpy drops it) or a record whose crc fails; use Verify (headtune
// cache verify) to check a folder first.
package featcache
