package featcache

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"
)

// File names inside one identity's folder.
const (
	dataName  = "features.f32"
	indexName = "rows.idx"
	lockName  = "lock"
	viewsDir  = "views"
)

// Index layout (all integers little-endian). The file starts with one
// 48-byte header and continues with 48-byte records:
//
//	header: magic "HTFCIDX1" [0:8], version u32 [8:12], dim u32 [12:16],
//	        zero [16:44], CRC-32C of bytes [0:44] at [44:48]
//	record: key [0:32], row u64 [32:40], CRC-32C of the row's 4*dim data
//	        bytes u32 [40:44], CRC-32C of bytes [0:44] u32 [44:48]
const (
	// RecordSize is the size in bytes of the index header and of each index
	// record.
	RecordSize   = 48
	indexMagic   = "HTFCIDX1"
	indexVersion = 1
	// maxRecords bounds the records of one folder (int32 table slots).
	maxRecords = 1<<31 - 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// record is one committed index entry.
type record struct {
	key Key
	row int64  // row number in features.f32
	crc uint32 // CRC-32C of the row's bytes
}

func encodeHeader(dim int) []byte {
	b := make([]byte, RecordSize)
	copy(b, indexMagic)
	binary.LittleEndian.PutUint32(b[8:], indexVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(dim))
	binary.LittleEndian.PutUint32(b[44:], crc32c(b[:44]))
	return b
}

// parseHeader returns the dimension recorded in an index header.
func parseHeader(b []byte) (int, error) {
	if len(b) < RecordSize {
		return 0, fmt.Errorf("index header truncated (%d of %d bytes)", len(b), RecordSize)
	}
	b = b[:RecordSize]
	if string(b[:8]) != indexMagic {
		return 0, fmt.Errorf("not a feature index (magic %q)", truncForMsg(b[:8]))
	}
	if got, want := binary.LittleEndian.Uint32(b[44:]), crc32c(b[:44]); got != want {
		return 0, fmt.Errorf("index header checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != indexVersion {
		return 0, fmt.Errorf("index version %d not supported (this build reads %d)", v, indexVersion)
	}
	dim := binary.LittleEndian.Uint32(b[12:])
	if dim == 0 || dim > MaxDim {
		return 0, fmt.Errorf("index dimension %d outside 1..%d", dim, MaxDim)
	}
	return int(dim), nil
}

// putRecord encodes r into b[:RecordSize].
func putRecord(b []byte, r record) {
	b = b[:RecordSize]
	copy(b, r.key[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(r.row))
	binary.LittleEndian.PutUint32(b[40:], r.crc)
	binary.LittleEndian.PutUint32(b[44:], crc32c(b[:44]))
}

// decodeRecord decodes one record slot; ok is false when its own checksum
// fails (torn or corrupt).
func decodeRecord(b []byte) (r record, ok bool) {
	b = b[:RecordSize]
	if binary.LittleEndian.Uint32(b[44:]) != crc32c(b[:44]) {
		return r, false
	}
	copy(r.key[:], b[:32])
	row := binary.LittleEndian.Uint64(b[32:])
	if row > math.MaxInt64/2 {
		return r, false
	}
	r.row = int64(row)
	r.crc = binary.LittleEndian.Uint32(b[40:])
	return r, true
}

// indexScan is the result of parsing a whole index file.
type indexScan struct {
	dim  int
	recs []record // the committed prefix: valid records with strictly increasing rows
	// validEnd is the byte length of header plus committed records.
	validEnd int64
	// tail is the number of bytes after validEnd. Zero for a clean index.
	tail int64
	// laterValid counts record slots after the first bad one whose own
	// checksum passes: non-zero means corruption inside the index rather
	// than a torn append at its end.
	laterValid int
	// badReason says why the record at validEnd was rejected ("" if none).
	badReason string
}

// torn reports whether the index has an uncommitted tail that is no more
// than an interrupted append (safe to drop).
func (s *indexScan) torn() bool { return s.tail > 0 && s.laterValid == 0 }

// corrupt reports whether trustworthy-looking records follow a bad one.
func (s *indexScan) corrupt() bool { return s.laterValid > 0 }

// parseIndex parses an index file's bytes. It never fails on records: it
// stops at the first record that is torn, fails its checksum or does not
// advance the row number, and describes what follows. It fails only on a
// bad header. recs may be preallocated by the caller (reused, appended to).
func parseIndex(data []byte, recs []record) (indexScan, error) {
	var s indexScan
	dim, err := parseHeader(data)
	if err != nil {
		return s, err
	}
	s.dim = dim
	n := (len(data) - RecordSize) / RecordSize
	if cap(recs)-len(recs) < n {
		grown := make([]record, len(recs), len(recs)+n)
		copy(grown, recs)
		recs = grown
	}
	off := RecordSize
	prev := int64(-1)
	for ; off+RecordSize <= len(data); off += RecordSize {
		r, ok := decodeRecord(data[off:])
		if !ok {
			s.badReason = "record checksum mismatch"
			break
		}
		if r.row <= prev {
			s.badReason = fmt.Sprintf("row %d does not follow row %d", r.row, prev)
			break
		}
		prev = r.row
		recs = append(recs, r)
	}
	s.recs = recs
	s.validEnd = int64(off)
	s.tail = int64(len(data) - off)
	if s.tail > 0 && s.badReason == "" {
		s.badReason = fmt.Sprintf("%d-byte partial record", s.tail)
	}
	if s.tail >= RecordSize {
		for o := off + RecordSize; o+RecordSize <= len(data); o += RecordSize {
			if _, ok := decodeRecord(data[o:]); ok {
				s.laterValid++
			}
		}
	}
	return s, nil
}

// littleEndian is true on hosts whose float32 memory layout is the file's.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// f32Bytes views a float32 slice as its bytes (host order). The result
// aliases v.
func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*4)
}

// putF32s encodes src as little-endian float32 into dst (len >= 4*len(src)).
func putF32s(dst []byte, src []float32) {
	if littleEndian {
		copy(dst, f32Bytes(src))
		return
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// fixF32s converts v in place from file order to host order after its bytes
// were read straight into it.
func fixF32s(v []float32) {
	if littleEndian {
		return
	}
	b := f32Bytes(v)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func f32FromLE(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }
