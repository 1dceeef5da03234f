// Package segment seals feature cache rows into immutable objects in
// object storage, and merges them back into a local feature cache, so
// that many machines can extract one dataset and one machine can train on
// the result.
//
// # Layout
//
// Under an output location, each backbone and shard has a folder:
//
//	<out>/<id16>/shard-00003-of-00016/chunk-000000.seg    sealed chunk: plan rows 0..M-1 of the shard
//	<out>/<id16>/shard-00003-of-00016/chunk-000001.seg
//	<out>/<id16>/shard-00003-of-00016/chunk-000002.claim  a task is computing chunk 2 (a hint only)
//	<out>/<id16>/shard-00003-of-00016/DONE.json           completion marker
//
// id16 is the first 16 hex digits of the BackboneID, as in a local cache.
// A chunk covers a fixed range of the shard manifest's rows, so every
// attempt at a shard cuts the same chunks; a chunk is written only if
// absent (objstore.CreateIfAbsent), so of two racing attempts one writes
// it and the other finds it; DONE.json likewise. A restarted task skips
// the chunks already sealed and resumes at the first that is not.
//
// # Chunk format
//
//	magic "HTSEG001" | u32 header length | header JSON | rows | trailer
//
// The header (Header) carries the backbone identity, the execution
// provider and ONNX Runtime version that computed the rows, the plan range,
// and one entry per image (its key in the dataset, label, split, content
// hash and row); rows are float32 little-endian, D per row, one per
// distinct content hash. The 20-byte trailer is the file's length (u64),
// the CRC-32C of everything before the trailer (u32) and "HTSEGEND": a
// truncated or damaged upload is detected and never trusted.
package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"time"

	"github.com/headtune/headtune/featcache"
)

// Header describes one sealed chunk.
type Header struct {
	Format     string             `json:"format"`
	Version    int                `json:"version"`
	BackboneID string             `json:"backbone_id"`
	Identity   featcache.Identity `json:"identity"`
	// Model is the backbone as the extracting command named it, and
	// Options how it was opened (opaque JSON of the caller's options), so
	// that training after a merge can reopen it the same way.
	Model   string          `json:"model"`
	Options json.RawMessage `json:"backbone_options,omitempty"`
	// Provider is the ONNX Runtime execution provider ("cpu", "cuda") and
	// ORTVersion the runtime's version: features of one backbone agree
	// across them only to about 1e-5, so merge reports a mixture.
	Provider   string `json:"execution_provider"`
	ORTVersion string `json:"onnxruntime_version"`
	Headtune   string `json:"headtune_version,omitempty"`

	Dataset string `json:"dataset"` // the plan's dataset root
	Shard   int    `json:"shard"`
	Shards  int    `json:"shards"`
	Chunk   int    `json:"chunk"`
	// First and End delimit the shard manifest rows [First, End) the chunk
	// covers.
	First int `json:"first"`
	End   int `json:"end"`

	Host    string    `json:"host"`
	Attempt string    `json:"attempt"`
	Created time.Time `json:"created"`

	Rows    int     `json:"rows"`
	Entries []Entry `json:"entries"`
	Skips   []Skip  `json:"skips,omitempty"`
}

// Entry maps one dataset key to a row of the chunk.
type Entry struct {
	Key   string        `json:"key"`
	Label string        `json:"label"`
	Split string        `json:"split,omitempty"`
	Hash  featcache.Key `json:"hash"`
	Row   int           `json:"row"`
}

// Skip is an image of the chunk's range that has no features, and why
// (deleted or changed since the plan, undecodable).
type Skip struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

const (
	magic     = "HTSEG001"
	endMagic  = "HTSEGEND"
	format    = "headtune-segment"
	version   = 1
	trailerSz = 20
	// MaxHeader bounds the header JSON (entries of one chunk).
	MaxHeader = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is matched by errors about a chunk that is truncated or fails
// its checksum.
var ErrCorrupt = errors.New("segment chunk is truncated or corrupt")

// Encode serialises a chunk: h (Format, Version, Rows and BackboneID are
// filled in) and rows, len(rows) == Rows*Dim.
func Encode(h *Header, rows []float32) ([]byte, error) {
	d := h.Identity.Dim
	if d <= 0 || len(rows)%d != 0 {
		return nil, fmt.Errorf("encode chunk: %d floats for dimension %d", len(rows), d)
	}
	h.Format, h.Version, h.Rows, h.BackboneID = format, version, len(rows)/d, h.Identity.ID()
	for i, e := range h.Entries {
		if e.Row < 0 || e.Row >= h.Rows {
			return nil, fmt.Errorf("encode chunk: entry %d (%s) points at row %d of %d", i, e.Key, e.Row, h.Rows)
		}
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode chunk header: %w", err)
	}
	var b bytes.Buffer
	b.Grow(len(magic) + 4 + len(hj) + 4*len(rows) + trailerSz)
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, uint32(len(hj)))
	b.Write(hj)
	var f [4]byte
	for _, v := range rows {
		binary.LittleEndian.PutUint32(f[:], math.Float32bits(v))
		b.Write(f[:])
	}
	total := uint64(b.Len() + trailerSz)
	crc := crc32.Checksum(b.Bytes(), castagnoli)
	binary.Write(&b, binary.LittleEndian, total)
	binary.Write(&b, binary.LittleEndian, crc)
	b.WriteString(endMagic)
	return b.Bytes(), nil
}

// Decode parses and verifies a chunk; where names it in errors. rows has
// h.Rows*h.Identity.Dim values and is owned by the caller.
func Decode(data []byte, where string) (*Header, []float32, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("chunk %s: %w: %s", where, ErrCorrupt, fmt.Sprintf(format, a...))
	}
	if len(data) < len(magic)+4+trailerSz || string(data[:len(magic)]) != magic {
		if len(data) >= len(magic) && string(data[:len(magic)]) != magic {
			return nil, nil, bad("not a segment chunk (magic %q)", strings.ToValidUTF8(string(data[:len(magic)]), "?"))
		}
		return nil, nil, bad("%d bytes, shorter than any chunk", len(data))
	}
	tr := data[len(data)-trailerSz:]
	if string(tr[12:]) != endMagic {
		return nil, nil, bad("no end marker: truncated upload (%d bytes)", len(data))
	}
	if total := binary.LittleEndian.Uint64(tr); total != uint64(len(data)) {
		return nil, nil, bad("%d bytes, its trailer says %d: truncated or padded", len(data), total)
	}
	body := data[:len(data)-trailerSz]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(tr[8:]); got != want {
		return nil, nil, bad("checksum %08x, trailer says %08x", got, want)
	}
	hl := int(binary.LittleEndian.Uint32(body[len(magic):]))
	if hl > MaxHeader || len(magic)+4+hl > len(body) {
		return nil, nil, bad("header length %d does not fit", hl)
	}
	var h Header
	if err := json.Unmarshal(body[len(magic)+4:len(magic)+4+hl], &h); err != nil {
		return nil, nil, bad("header: %v", err)
	}
	if h.Format != format || h.Version != version {
		return nil, nil, fmt.Errorf("chunk %s: format %q version %d, this build reads %q version %d", where, h.Format, h.Version, format, version)
	}
	if err := h.Identity.Validate(); err != nil {
		return nil, nil, fmt.Errorf("chunk %s: %w", where, err)
	}
	if id := h.Identity.ID(); id != h.BackboneID {
		return nil, nil, bad("backbone id %s does not match its identity (%s)", h.BackboneID, id)
	}
	raw := body[len(magic)+4+hl:]
	d := h.Identity.Dim
	if len(raw) != 4*d*h.Rows {
		return nil, nil, bad("%d bytes of rows, want %d rows of %d floats", len(raw), h.Rows, d)
	}
	rows := make([]float32, h.Rows*d)
	for i := range rows {
		rows[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	for i, e := range h.Entries {
		if e.Row < 0 || e.Row >= h.Rows {
			return nil, nil, bad("entry %d (%s) points at row %d of %d", i, e.Key, e.Row, h.Rows)
		}
	}
	return &h, rows, nil
}

// ShardDir is the folder of one backbone's shard under an output location.
func ShardDir(id featcache.Identity, shard, shards int) string {
	return fmt.Sprintf("%s/shard-%05d-of-%05d", id.ID()[:16], shard, shards)
}

// ChunkName is the object name of chunk c in a shard folder.
func ChunkName(c int) string { return fmt.Sprintf("chunk-%06d.seg", c) }

// ClaimName is the name of chunk c's claim in a shard folder.
func ClaimName(c int) string { return fmt.Sprintf("chunk-%06d.claim", c) }

// DoneName is the completion marker of a shard folder.
const DoneName = "DONE.json"

// Done is DONE.json: which attempt completed the shard and what it holds.
type Done struct {
	BackboneID string    `json:"backbone_id"`
	Shard      int       `json:"shard"`
	Shards     int       `json:"shards"`
	Chunks     int       `json:"chunks"`
	Entries    int       `json:"entries"`
	Skipped    int       `json:"skipped"`
	Attempt    string    `json:"attempt"`
	Host       string    `json:"host"`
	Completed  time.Time `json:"completed"`
}

// TrailerSize is the length of a chunk's trailer.
const TrailerSize = trailerSz

// CheckTrailer checks the last TrailerSize bytes of a chunk of size bytes:
// a cheap test that an upload is complete (Decode checks everything).
func CheckTrailer(tr []byte, size int64, where string) error {
	if len(tr) != trailerSz || string(tr[12:]) != endMagic {
		return fmt.Errorf("chunk %s: %w: no end marker (truncated upload of %d bytes)", where, ErrCorrupt, size)
	}
	if total := binary.LittleEndian.Uint64(tr); total != uint64(size) {
		return fmt.Errorf("chunk %s: %w: %d bytes, its trailer says %d", where, ErrCorrupt, size, total)
	}
	return nil
}
