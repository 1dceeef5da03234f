package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/imaging"
)

// ErrNoFace is the reason an image yields no sample in face mode.
var ErrNoFace = errors.New("no face found")

// FaceKey is the cache key of face k of the file whose bytes hash to
// fileHash. The recipe (detector, threshold, alignment, margin) is not in
// it: it is in the BackboneID, the cache key's other half.
func FaceKey(fileHash [32]byte, k int) [32]byte {
	var b [len("headtune-face\x00") + 32 + 4]byte
	n := copy(b[:], "headtune-face\x00")
	n += copy(b[n:], fileHash[:])
	binary.LittleEndian.PutUint32(b[n:], uint32(k))
	return sha256.Sum256(b[:])
}

// FaceRunner turns images into face samples and runs them through a
// backbone: read and hash the file, decode, detect, pick the faces (the
// largest, or all), crop each with Spec.Faces's alignment and margin at the
// backbone's input size, and run the crops of one image as one batch.
// Images are processed by Workers goroutines and reported in order.
type FaceRunner struct {
	Detector *faces.Detector
	Session  *ort.Session // the backbone; its input must take Spec's tensor
	Spec     imaging.Spec // with Faces set
	// All selects every face; otherwise the largest (face 0) only.
	All bool
	// Workers is the number of images processed at once (0: GOMAXPROCS).
	// Sessions with one intra-op thread want one per core.
	Workers int
	// Skip, when set, reports whether the features of a face key are known
	// already: that face is not cropped or run, and FaceImage.Cached says
	// so. Called from several goroutines.
	Skip func(key [32]byte) bool
}

// FaceImage is what FaceRunner reports for one image. Its slices are
// owned by the receiver.
type FaceImage struct {
	Index int    // position in the Run call's path list
	Path  string //
	Hash  [32]byte
	W, H  int          // decoded size, displayed orientation
	Faces []faces.Face // every face detected, largest first
	// Selected lists the face indices that became samples (0 alone, or
	// all); Keys, Cached and the rows of Outputs follow its order.
	Selected []int
	Keys     [][32]byte
	Cached   []bool
	// Outputs holds, per session output, len(Selected) rows; the rows of
	// cached faces are zero.
	Outputs [][]float32
	// Err is why the image gave no sample: a read or decode error, or
	// ErrNoFace.
	Err error
}

// Run processes paths and calls emit for every image, in order, from the
// calling goroutine. It stops at the first error of emit or of the
// detector or backbone (a broken model, a cancelled ctx); unreadable
// images and images without faces are reported through FaceImage.Err.
func (r *FaceRunner) Run(ctx context.Context, paths []string, emit func(*FaceImage) error) error {
	if r.Detector == nil || r.Session == nil {
		return errors.New("face runner: detector and backbone session are required")
	}
	if r.Spec.Faces.IsZero() {
		return errors.New("face runner: the preprocessing recipe has no face stage")
	}
	if err := r.Spec.Validate(); err != nil {
		return err
	}
	if r.Session.InputLen() != r.Spec.TensorLen() {
		return fmt.Errorf("face crops make %d values each but the model takes %d", r.Spec.TensorLen(), r.Session.InputLen())
	}
	workers := r.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		img *FaceImage
		err error // fatal
	}
	// Results of images in flight, by index; at most 2*workers images are
	// in flight, which bounds memory.
	slots := make([]chan result, len(paths))
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, 2*workers)
	next := make(chan int)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(next)
		for i := range paths {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var big sync.Mutex // images over bigImagePixels are decoded one at a time
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := faceState{big: &big}
			for i := range next {
				img, err := r.one(ctx, i, paths[i], &st)
				slots[i] <- result{img, err}
			}
		}()
	}
	for i := range paths {
		var res result
		select {
		case res = <-slots[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-sem
		if res.err != nil {
			return res.err
		}
		if err := emit(res.img); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// faceState is one worker's reusable buffers: decoding a photo into fresh
// memory costs page faults (a 1920x1280 photo is 7 MB of pixels).
type faceState struct {
	buf  []byte
	img  imaging.RGB
	crop []float32
	in   []float32
	big  *sync.Mutex
}

// one processes one image. A non-nil error is fatal (model or context);
// problems with the image itself go into FaceImage.Err.
func (r *FaceRunner) one(ctx context.Context, idx int, path string, st *faceState) (*FaceImage, error) {
	fi := &FaceImage{Index: idx, Path: path}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var err error
	st.buf, err = readFile(path, st.buf)
	if err != nil {
		fi.Err = err
		return fi, nil
	}
	fi.Hash = sha256.Sum256(st.buf)
	if _, w, h, cerr := imaging.DecodeConfig(st.buf); cerr == nil && int64(w)*int64(h) > bigImagePixels {
		// As in Runner: one large image at a time, and its buffers are let
		// go afterwards, so peak memory stays near one large image.
		st.big.Lock()
		defer func() { st.img, st.buf = imaging.RGB{}, nil; st.big.Unlock() }()
	}
	img, err := imaging.Decode(st.buf, imaging.DecodeOptions{Background: r.Spec.Background, Dst: &st.img})
	if err != nil {
		fi.Err = err
		return fi, nil
	}
	fi.W, fi.H = img.W, img.H
	if fi.Faces, err = r.Detector.Detect(ctx, img, r.Spec.Faces); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(fi.Faces) == 0 {
		fi.Err = ErrNoFace
		return fi, nil
	}
	n := 1
	if r.All {
		n = len(fi.Faces)
	}
	inLen := r.Spec.TensorLen()
	fi.Selected, fi.Keys, fi.Cached = make([]int, n), make([][32]byte, n), make([]bool, n)
	var todo []int
	for k := 0; k < n; k++ {
		fi.Selected[k] = k
		fi.Keys[k] = FaceKey(fi.Hash, k)
		if r.Skip != nil && r.Skip(fi.Keys[k]) {
			fi.Cached[k] = true
			continue
		}
		todo = append(todo, k)
	}
	sizes := r.Session.OutputSizes()
	fi.Outputs = make([][]float32, len(sizes))
	for o, s := range sizes {
		fi.Outputs[o] = make([]float32, n*s)
	}
	if len(todo) == 0 {
		return fi, nil
	}
	if cap(st.in) < len(todo)*inLen {
		st.in = make([]float32, len(todo)*inLen)
	}
	in := st.in[:len(todo)*inLen]
	for j, k := range todo {
		if st.crop, err = faces.Crop(img, faces.FrameOf(fi.Faces[k], r.Spec.Faces), r.Spec.Width, st.crop); err != nil {
			return nil, fmt.Errorf("%s face %d: %w", path, k, err)
		}
		if err := faces.Tensor(st.crop, r.Spec, in[j*inLen:(j+1)*inLen]); err != nil {
			return nil, fmt.Errorf("%s face %d: %w", path, k, err)
		}
	}
	outs := make([][]float32, len(sizes))
	for o, s := range sizes {
		outs[o] = make([]float32, len(todo)*s)
	}
	if err := r.Session.Run(ctx, in, len(todo), outs...); err != nil {
		return nil, err
	}
	for o, s := range sizes {
		for j, k := range todo {
			copy(fi.Outputs[o][k*s:(k+1)*s], outs[o][j*s:(j+1)*s])
		}
	}
	return fi, nil
}
