package featcache

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteNPYFloat32 writes a row-major float32 matrix of shape rows x cols as
// a NumPy .npy file (format 1.0, little endian '<f4'), readable with
// numpy.load. The file is written through a temporary file and renamed.
func WriteNPYFloat32(path string, data []float32, rows, cols int) error {
	if len(data) != rows*cols {
		return fmt.Errorf("write %s: %d values for shape %dx%d", path, len(data), rows, cols)
	}
	return writeNPY(path, "<f4", fmt.Sprintf("(%d, %d)", rows, cols), func(w *bufio.Writer) error {
		var b [4]byte
		for _, v := range data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			if _, err := w.Write(b[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteNPYInt32 writes a vector of int32 labels as a .npy file ('<i4').
func WriteNPYInt32(path string, data []int32) error {
	return writeNPY(path, "<i4", fmt.Sprintf("(%d,)", len(data)), func(w *bufio.Writer) error {
		var b [4]byte
		for _, v := range data {
			binary.LittleEndian.PutUint32(b[:], uint32(v))
			if _, err := w.Write(b[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeNPY(path, dtype, shape string, body func(*bufio.Writer) error) error {
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", dtype, shape)
	// Magic (6) + version (2) + header length (2) + header + '\n' is padded
	// to a multiple of 64 bytes, as numpy does.
	total := 10 + len(header) + 1
	pad := (64 - total%64) % 64
	header += strings.Repeat(" ", pad) + "\n"
	if len(header) > math.MaxUint16 {
		return fmt.Errorf("write %s: npy header of %d bytes too long", path, len(header))
	}
	// Written through a synced temporary file and renamed: an existing file
	// at path is replaced whole or left untouched.
	return writeAtomicStream(osFS{}, path, 0o644, func(out io.Writer) error {
		w := bufio.NewWriterSize(out, 1<<20)
		w.WriteString("\x93NUMPY\x01\x00")
		var hl [2]byte
		binary.LittleEndian.PutUint16(hl[:], uint16(len(header)))
		w.Write(hl[:])
		w.WriteString(header)
		if err := body(w); err != nil {
			return err
		}
		return w.Flush()
	})
}
