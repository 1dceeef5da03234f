package darknet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Header is the start of a .weights file: the format version and the
// number of training images the network has seen.
type Header struct {
	Major, Minor, Revision int32
	// Seen is stored as 64 bits when Major*10+Minor >= 2 (and both are
	// below 1000), as 32 bits in older files.
	Seen uint64
	// SeenBits is 32 or 64, as read.
	SeenBits int
}

// Size is the header's length in bytes.
func (h Header) Size() int64 { return 12 + int64(h.SeenBits/8) }

// seen64 is Darknet's rule (parser.c load_weights_upto) for the width of
// the seen counter.
func seen64(major, minor int32) bool {
	return major*10+minor >= 2 && major < 1000 && minor < 1000
}

// ReadHeader reads the header of a .weights file.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	var v [3]int32
	if err := binary.Read(r, binary.LittleEndian, &v); err != nil {
		return h, fmt.Errorf("header: %w", truncated(err))
	}
	h.Major, h.Minor, h.Revision = v[0], v[1], v[2]
	if h.Major < 0 || h.Minor < 0 {
		return h, fmt.Errorf("header: version %d.%d is not a Darknet weights file", h.Major, h.Minor)
	}
	if h.Major >= 1000 || h.Minor >= 1000 {
		// Darknet then stores connected weights transposed; no published
		// network uses it, and guessing would give wrong features.
		return h, fmt.Errorf("header: version %d.%d (transposed connected weights) is not supported", h.Major, h.Minor)
	}
	if seen64(h.Major, h.Minor) {
		var s uint64
		if err := binary.Read(r, binary.LittleEndian, &s); err != nil {
			return h, fmt.Errorf("header: %w", truncated(err))
		}
		h.Seen, h.SeenBits = s, 64
	} else {
		var s uint32
		if err := binary.Read(r, binary.LittleEndian, &s); err != nil {
			return h, fmt.Errorf("header: %w", truncated(err))
		}
		h.Seen, h.SeenBits = uint64(s), 32
	}
	return h, nil
}

// WriteHeader writes h in Darknet's layout; the seen counter's width
// follows h.Major and h.Minor as Darknet reads it, whatever h.SeenBits says.
func WriteHeader(w io.Writer, h Header) error {
	if err := binary.Write(w, binary.LittleEndian, [3]int32{h.Major, h.Minor, h.Revision}); err != nil {
		return err
	}
	if seen64(h.Major, h.Minor) {
		return binary.Write(w, binary.LittleEndian, h.Seen)
	}
	return binary.Write(w, binary.LittleEndian, uint32(h.Seen))
}

func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}

var errTruncated = errors.New("file ends early")

// floatReader reads little-endian float32 runs and counts them.
type floatReader struct {
	r    *bufio.Reader
	read int64 // floats read so far
	buf  []byte
}

func newFloatReader(r io.Reader) *floatReader {
	return &floatReader{r: bufio.NewReaderSize(r, 1<<20)}
}

// next reads n floats into a fresh slice. It reads in chunks and grows
// the slice as data arrives, so a cfg that asks for more than the file
// holds fails without first allocating what it asked for.
func (f *floatReader) next(n int) ([]float32, error) {
	const chunk = 1 << 18
	if f.buf == nil {
		f.buf = make([]byte, 4*chunk)
	}
	out := make([]float32, 0, min(n, chunk))
	for len(out) < n {
		k := min(n-len(out), chunk)
		b := f.buf[:4*k]
		if _, err := io.ReadFull(f.r, b); err != nil {
			return nil, truncated(err)
		}
		for i := 0; i < k; i++ {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
	}
	f.read += int64(n)
	return out, nil
}

// surplus reports how many bytes are left after the last layer.
func (f *floatReader) surplus() (int64, error) {
	n, err := io.Copy(io.Discard, f.r)
	return n, err
}
