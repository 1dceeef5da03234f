// Command benchdecode measures JPEG decoding throughput in Go on a folder of
// JPEGs: the standard library baseline (image/jpeg, with x/image/draw
// resizing), libjpeg-turbo through imaging/turbojpeg at full size and with
// DCT-domain scaling, and the imaging package's whole path to a model input
// tensor with FastJPEG off and on. scripts/bench_decode.sh runs it beside
// PIL and OpenCV (scripts/bench_decode.py) on the same files, pinned to one
// core, and prints one table.
//
// Every case works on file bytes already in memory, reuses its output
// buffers from image to image, and ends where its name says: "decode" at
// the decoder's own image, "tensor" at a size x size float32 HWC tensor in
// 0..1 after a bilinear squash resize. Output: one line per case,
// name<TAB>images per wall-clock second<TAB>images per CPU second (user+sys
// of the whole process, GC included), medians of the repeats. On a shared
// machine the CPU-time rate is the steadier of the two.
//
// usage: go run ./scripts/benchdecode -dir DIR [-repeats 5] [-size 224]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"syscall"
	"time"

	"golang.org/x/image/draw"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/imaging/turbojpeg"
)

func main() {
	dir := flag.String("dir", "", "folder of .jpg files")
	repeats := flag.Int("repeats", 5, "timed passes over all files per case; the median is printed")
	size := flag.Int("size", 224, "tensor side in pixels")
	only := flag.String("only", "", "run only the case with this name")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the timed passes to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchdecode: cpu profile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*dir, *repeats, *size, *only); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "benchdecode:", err)
		os.Exit(1)
	}
}

type benchCase struct {
	name string
	fn   func(data []byte) error
}

func run(dir string, repeats, size int, only string) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no .jpg files in %s", dir)
	}
	sort.Strings(paths)
	blobs := make([][]byte, len(paths))
	for i, p := range paths {
		if blobs[i], err = os.ReadFile(p); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}

	// Shared, reused outputs.
	tensor := make([]float32, size*size*3)
	rgba := image.NewRGBA(image.Rect(0, 0, size, size))
	toTensor := func(m *image.RGBA) {
		const k = float32(1) / 255
		for i, j := 0, 0; i < len(tensor); i, j = i+3, j+4 {
			tensor[i], tensor[i+1], tensor[i+2] = float32(m.Pix[j])*k, float32(m.Pix[j+1])*k, float32(m.Pix[j+2])*k
		}
	}
	goScale := func(s draw.Scaler) func([]byte) error {
		return func(data []byte) error {
			img, err := jpeg.Decode(bytes.NewReader(data))
			if err != nil {
				return err
			}
			s.Scale(rgba, rgba.Bounds(), img, img.Bounds(), draw.Src, nil)
			toTensor(rgba)
			return nil
		}
	}
	var pix []uint8
	var rgb imaging.RGB
	spec, err := imaging.Preset("unit")
	if err != nil {
		return err
	}
	spec.Width, spec.Height = size, size
	spec.Resize = imaging.ResizeSquash
	spec.Interpolation = imaging.InterpBilinear
	spec.Layout = imaging.LayoutNHWC
	fast := spec
	fast.FastJPEG = true
	scratch := imaging.NewScratch()

	cases := []benchCase{
		{"Go image/jpeg decode", func(data []byte) error {
			_, err := jpeg.Decode(bytes.NewReader(data))
			return err
		}},
		{"Go image/jpeg + draw.ApproxBiLinear tensor", goScale(draw.ApproxBiLinear)},
		{"Go image/jpeg + draw.BiLinear tensor", goScale(draw.BiLinear)},
		{"Go imaging.Decode (image/jpeg, packed RGB)", func(data []byte) error {
			_, err := imaging.Decode(data, imaging.DecodeOptions{Dst: &rgb})
			return err
		}},
		{"Go imaging tensor (bilinear), FastJPEG off", func(data []byte) error {
			return spec.LoadBytes(data, tensor, scratch)
		}},
	}
	if turbojpeg.Available() {
		fmt.Fprintf(os.Stderr, "benchdecode: libturbojpeg %s (%s)\n", turbojpeg.Path(), turbojpeg.Version())
		cases = append(cases,
			benchCase{"Go turbojpeg decode", func(data []byte) error {
				_, _, pix, err = turbojpeg.Decode(data, pix)
				return err
			}},
			benchCase{fmt.Sprintf("Go turbojpeg DCT-scaled decode (>= %d)", size), func(data []byte) error {
				_, _, pix, err = turbojpeg.DecodeScaled(data, size, size, pix)
				return err
			}},
			benchCase{"Go imaging tensor (bilinear), FastJPEG on", func(data []byte) error {
				return fast.LoadBytes(data, tensor, scratch)
			}},
		)
	} else {
		fmt.Fprintf(os.Stderr, "benchdecode: libturbojpeg unavailable, turbojpeg cases skipped: %v\n", turbojpeg.LoadError())
	}

	for _, c := range cases {
		if only != "" && c.name != only {
			continue
		}
		for _, b := range blobs[:min(10, len(blobs))] { // warm up buffers
			if err := c.fn(b); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		wall := make([]float64, 0, repeats)
		cpu := make([]float64, 0, repeats)
		for r := 0; r < repeats; r++ {
			t0, c0 := time.Now(), cpuSeconds()
			for i, b := range blobs {
				if err := c.fn(b); err != nil {
					return fmt.Errorf("%s: %s: %w", c.name, paths[i], err)
				}
			}
			wall = append(wall, float64(len(blobs))/time.Since(t0).Seconds())
			cpu = append(cpu, float64(len(blobs))/max(cpuSeconds()-c0, 1e-9))
		}
		fmt.Printf("%s\t%.1f\t%.1f\n", c.name, median(wall), median(cpu))
	}
	return nil
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// cpuSeconds returns the user+system CPU time of the whole process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
