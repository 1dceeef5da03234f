// Command fashionmnist writes a subset of Fashion-MNIST (Debian package
// dataset-fashion-mnist, MIT licence) as a folder-per-class image dataset:
//
//	OUT/train/<class>/<n>.png   the first -train images of the training set
//	OUT/test/<class>/<n>.png    the first -test images of the test set
//
// It is how `make demo`, the benchmarks and the end-to-end tests get a real
// labelled image set without network access. -format jpeg writes JPEGs and
// -size upscales (bilinear) so decoding costs what it costs on photos.
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/image/draw"
)

// Classes are Fashion-MNIST's labels 0..9, spelled as folder names.
var Classes = []string{"tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"}

func main() {
	src := flag.String("src", "/usr/share/datasets/fashion-mnist", "folder with the IDX .gz files")
	out := flag.String("out", "fashion-mnist", "output folder")
	nTrain := flag.Int("train", 3000, "training images to write")
	nTest := flag.Int("test", 1000, "test images to write")
	format := flag.String("format", "png", "png or jpeg")
	size := flag.Int("size", 28, "output side in pixels (bilinear upscale above 28)")
	quality := flag.Int("quality", 90, "JPEG quality")
	flag.Parse()
	for _, part := range []struct {
		split, prefix string
		n             int
	}{{"train", "train", *nTrain}, {"test", "t10k", *nTest}} {
		if part.n == 0 {
			continue
		}
		imgs, err := readImages(filepath.Join(*src, part.prefix+"-images-idx3-ubyte.gz"), part.n)
		if err != nil {
			fail(err)
		}
		labels, err := readLabels(filepath.Join(*src, part.prefix+"-labels-idx1-ubyte.gz"), part.n)
		if err != nil {
			fail(err)
		}
		written := 0
		for i, img := range imgs {
			dir := filepath.Join(*out, part.split, Classes[labels[i]])
			ext := ".png"
			if *format == "jpeg" {
				ext = ".jpg"
			}
			path := filepath.Join(dir, fmt.Sprintf("%05d%s", i, ext))
			if _, err := os.Stat(path); err == nil {
				continue
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fail(err)
			}
			if err := write(path, img, *format, *size, *quality); err != nil {
				fail(err)
			}
			written++
		}
		fmt.Fprintf(os.Stderr, "fashionmnist: %s: %d images (%d new) in %s\n", part.split, len(imgs), written, filepath.Join(*out, part.split))
	}
}

func write(path string, g *image.Gray, format string, size, quality int) error {
	var img image.Image = g
	if size != 28 {
		dst := image.NewGray(image.Rect(0, 0, size, size))
		draw.BiLinear.Scale(dst, dst.Bounds(), g, g.Bounds(), draw.Src, nil)
		img = dst
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if format == "jpeg" {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: quality})
	} else {
		err = png.Encode(f, img)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func open(path string) (*bufio.Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (install the Debian package dataset-fashion-mnist)", err)
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return bufio.NewReader(z), f, nil
}

func readImages(path string, n int) ([]*image.Gray, error) {
	r, c, err := open(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var hdr [4]uint32
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if hdr[0] != 2051 || hdr[2] != 28 || hdr[3] != 28 {
		return nil, fmt.Errorf("%s: not an IDX image file of 28x28 images", path)
	}
	n = min(n, int(hdr[1]))
	out := make([]*image.Gray, n)
	for i := range out {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		if _, err := io.ReadFull(r, g.Pix); err != nil {
			return nil, fmt.Errorf("%s: image %d: %w", path, i, err)
		}
		out[i] = g
	}
	return out, nil
}

func readLabels(path string, n int) ([]uint8, error) {
	r, c, err := open(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var hdr [2]uint32
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if hdr[0] != 2049 {
		return nil, fmt.Errorf("%s: not an IDX label file", path)
	}
	n = min(n, int(hdr[1]))
	out := make([]uint8, n)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, l := range out {
		if int(l) >= len(Classes) {
			return nil, fmt.Errorf("%s: label %d of image %d out of range", path, l, i)
		}
	}
	return out, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fashionmnist:", err)
	os.Exit(1)
}
