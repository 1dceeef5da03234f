// Package fashionmnist reads Fashion-MNIST's IDX files (Debian package
// dataset-fashion-mnist, MIT licence) as a float32 matrix, for tests and
// measurement scripts that need real labelled data without network access.
package fashionmnist

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Dir is where the Debian package installs the files.
const Dir = "/usr/share/datasets/fashion-mnist"

// Classes are the labels 0..9.
var Classes = []string{"tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"}

// Side is the image side in pixels; a row has Side*Side values.
const Side = 28

// Load reads the first n images of a part ("train": 60,000 images, "t10k":
// 10,000) from dir as X [n*784] with pixels scaled to [0, 1] and labels
// [n]. It returns an error wrapping os.ErrNotExist when the files are absent.
func Load(dir, part string, n int) (X []float32, labels []int32, err error) {
	ip := filepath.Join(dir, part+"-images-idx3-ubyte.gz")
	lp := filepath.Join(dir, part+"-labels-idx1-ubyte.gz")
	labels8, err := read(lp, 2049, n, 1)
	if err != nil {
		return nil, nil, err
	}
	pix, err := read(ip, 2051, len(labels8), Side*Side)
	if err != nil {
		return nil, nil, err
	}
	X = make([]float32, len(pix))
	for i, v := range pix {
		X[i] = float32(v) / 255
	}
	labels = make([]int32, len(labels8))
	for i, v := range labels8 {
		if v >= 10 {
			return nil, nil, fmt.Errorf("%s: label %d of item %d out of range", lp, v, i)
		}
		labels[i] = int32(v)
	}
	return X, labels, nil
}

// read returns the first n items of size bytes of an IDX file with the
// given magic number.
func read(path string, magic uint32, n, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (install the Debian package dataset-fashion-mnist)", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := bufio.NewReader(z)
	var m, count uint32
	if err := binary.Read(r, binary.BigEndian, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m != magic {
		return nil, fmt.Errorf("%s: magic %d, want %d: not the expected IDX file", path, m, magic)
	}
	if err := binary.Read(r, binary.BigEndian, &count); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if magic == 2051 {
		var dims [2]uint32
		if err := binary.Read(r, binary.BigEndian, &dims); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if dims != [2]uint32{Side, Side} {
			return nil, fmt.Errorf("%s: %dx%d images, want %dx%d", path, dims[0], dims[1], Side, Side)
		}
	}
	if n <= 0 || n > int(count) {
		n = int(count)
	}
	out := make([]byte, n*size)
	if _, err := io.ReadFull(r, out); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: truncated: %w", path, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
