// Package pipeline runs images through a backbone: decode workers fill
// batch buffers while ONNX Runtime runs other batches, and each finished
// batch is handed to the caller, in order (the feature cache for extract,
// the head for predict). Memory is bounded by the batch size and the number
// of batches in flight, never by the number of images.
//
// Every unit of work is single-threaded: decoding one image, or running one
// batch through a session with one intra-op thread. By default each core
// has one goroutine that reads and decodes a batch and then runs it
// ("fused"): the tensors are still in that core's cache when inference
// reads them, no thread is descheduled in the middle of an operator, and
// small batches (whose activations fit in cache) run as fast as they can.
// With Workers set, decoding runs on its own goroutines and hands batches
// to the inference goroutines instead (the layout for one multi-threaded
// session). Either way there are no barrier stalls of a multi-threaded
// ONNX Runtime sharing its cores with decode workers (a parallel operator
// waits for its slowest thread, and a descheduled thread stalls them all).
package pipeline

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
)

// Runner feeds files through a Session with a preprocessing Spec.
type Runner struct {
	Session *ort.Session
	Spec    imaging.Spec
	// BatchSize is the number of samples per inference call; 0 picks
	// DefaultBatch(r.Fused()).
	BatchSize int
	// Workers, when positive, is the number of goroutines that decode
	// separately from inference. 0: fused when Inferers > 1 (each
	// inference goroutine decodes its own batches), else GOMAXPROCS
	// separate decode goroutines.
	Workers int
	// Inferers is the number of batches run through the session at once;
	// default 1. Sessions made with one intra-op thread want one per core.
	Inferers int

	// Skip, when set, is asked after a file is read and hashed; true means
	// its features are known already, so it is neither decoded nor run and
	// OnCached reports it instead. Called from several goroutines.
	Skip func(hash [32]byte) bool
	// OnCached is called, in order from the Run goroutine, for each file
	// Skip accepted.
	OnCached func(index int, hash [32]byte)
	// OnFail is called, in order from the Run goroutine, for each file that
	// could not be read or decoded; the run goes on.
	OnFail func(Failure)
	// Read, when set, reads input i (of Run's list) into buf, reusing it,
	// instead of reading the local file paths[i]: object storage readers
	// plug in here. Called from several goroutines.
	Read func(ctx context.Context, i int, buf []byte) ([]byte, error)
}

// DefaultBatch is the batch size a Runner uses when BatchSize is 0: 1
// when fused (a core decodes an image and runs it while it is in cache;
// MobileNetV2 extracts faster than with 16, ResNet-18 the same), 16 with
// separate decode workers (fewer hand-offs between goroutines).
func DefaultBatch(fused bool) int {
	if fused {
		return 1
	}
	return 16
}

// Fused reports whether Run decodes on the inference goroutines (see
// Workers).
func (r *Runner) Fused() bool { return r.Workers <= 0 && r.Inferers > 1 }

// bigImagePixels is the size above which images are decoded one at a time
// (16 MP: a 4-byte-per-pixel decode of one is 64 MB, before the copies).
const bigImagePixels = 16 << 20

// errCached marks a slot whose features are already known.
var errCached = errors.New("cached")

// Batch is one inference batch handed to the caller's callback. Its slices
// are owned by the Runner and reused after the callback returns: copy what
// must outlive it.
type Batch struct {
	N       int         // samples in this batch that decoded and ran
	Index   []int       // [N] positions in the Run call's path list
	Hash    [][32]byte  // [N] SHA-256 of each file's bytes
	Outputs [][]float32 // per output, N*size values, batch-major
	Input   []float32   // N*InputLen preprocessed values (for tests and debugging)

	// slots: assigned before decoding; compacted into the fields above.
	slots    int
	outFull  [][]float32 // full-capacity output buffers; Outputs are their first N rows
	slotIdx  []int
	slotErr  []error
	slotHash [][32]byte
	decoded  sync.WaitGroup // one per slot, done when the worker is done with it
	ran      sync.WaitGroup // done when inference has run (or failed)
	err      error          // inference error
}

// Failure is an input that could not be processed.
type Failure struct {
	Index int
	Path  string
	Err   error
}

func (f Failure) Error() string { return fmt.Sprintf("%s: %v", f.Path, f.Err) }

type job struct {
	b    *Batch
	slot int
}

// Run processes paths in order. onBatch is called for every batch that ran,
// in order, from the calling goroutine. Run returns ctx.Err() when
// cancelled: everything already passed to onBatch is complete, batches in
// flight are dropped.
func (r *Runner) Run(ctx context.Context, paths []string, onBatch func(*Batch) error) error {
	fused := r.Fused()
	bs := r.BatchSize
	if bs <= 0 {
		bs = DefaultBatch(fused)
	}
	workers := 0 // separate decode goroutines; none when fused
	if !fused {
		workers = r.Workers
		if workers <= 0 {
			workers = runtime.GOMAXPROCS(0)
		}
	}
	inferers := max(r.Inferers, 1)
	inLen := r.Session.InputLen()
	if inLen != r.Spec.TensorLen() {
		return fmt.Errorf("preprocessing makes %d values per image but the model takes %d", r.Spec.TensorLen(), inLen)
	}
	sizes := r.Session.OutputSizes()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel first, then wait: every goroutine exits on ctx.
	defer func() { cancel(); wg.Wait() }()

	// Batches in flight bound memory: one being filled, one per inferer
	// running, one waiting for each, and one being handed over.
	inFlight := 2*inferers + 2
	free := make(chan *Batch, inFlight)
	for i := 0; i < inFlight; i++ {
		b := &Batch{
			Input:    make([]float32, bs*inLen),
			Index:    make([]int, 0, bs),
			Hash:     make([][32]byte, bs),
			slotHash: make([][32]byte, bs),
			slotIdx:  make([]int, bs),
			slotErr:  make([]error, bs),
			Outputs:  make([][]float32, len(sizes)),
			outFull:  make([][]float32, len(sizes)),
		}
		for k, s := range sizes {
			b.outFull[k] = make([]float32, bs*s)
		}
		free <- b
	}
	jobs := make(chan job, bs)
	ready := make(chan *Batch, inFlight) // to the inferers
	order := make(chan *Batch, inFlight) // to the caller, in dispatch order

	// Dispatcher: assigns files to batch slots in order.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(ready)
		defer close(jobs)
		var b *Batch
		for i := range paths {
			if b == nil {
				select {
				case b = <-free:
				case <-ctx.Done():
					return
				}
				b.slots = 0
				b.ran.Add(1)
			}
			b.slotIdx[b.slots] = i
			b.slotErr[b.slots] = nil
			if !fused {
				b.decoded.Add(1)
				select {
				case jobs <- job{b, b.slots}:
				case <-ctx.Done():
					b.decoded.Done()
					return
				}
			}
			b.slots++
			if b.slots == bs || i == len(paths)-1 {
				// order has room for every batch in flight, so this never
				// blocks; ready is drained by the inferers.
				order <- b
				select {
				case ready <- b:
				case <-ctx.Done():
					b.ran.Done() // the caller is waiting for it
					return
				}
				b = nil
			}
		}
	}()

	// Large images (over bigImagePixels) are decoded one at a time, and the
	// goroutine that decoded one lets its buffers go: peak memory then
	// stays near one large image plus small ones, whatever the worker
	// count.
	var bigImage sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls loadState
			for j := range jobs {
				r.load(ctx, paths, j.b, j.slot, inLen, &ls, &bigImage)
				j.b.decoded.Done()
			}
		}()
	}

	for k := 0; k < inferers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls loadState
			for b := range ready {
				if fused {
					for s := 0; s < b.slots; s++ {
						r.load(ctx, paths, b, s, inLen, &ls, &bigImage)
					}
				} else {
					b.decoded.Wait()
				}
				b.err = r.infer(ctx, b, inLen, sizes)
				b.ran.Done()
			}
		}()
	}

	for b := range order {
		b.ran.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.err != nil {
			return b.err
		}
		for s := 0; s < b.slots; s++ {
			idx := b.slotIdx[s]
			if err := b.slotErr[s]; err == errCached {
				if r.OnCached != nil {
					r.OnCached(idx, b.slotHash[s])
				}
			} else if err != nil && r.OnFail != nil {
				r.OnFail(Failure{Index: idx, Path: paths[idx], Err: err})
			}
		}
		if b.N > 0 {
			if err := onBatch(b); err != nil {
				return err
			}
		}
		free <- b
	}
	return ctx.Err()
}

// loadState is one goroutine's reusable decode buffers.
type loadState struct {
	scratch imaging.Scratch
	buf     []byte
}

// load reads, hashes and (unless Skip knows it) decodes the file of slot
// into the batch's input, recording the outcome in b.slotErr[slot].
func (r *Runner) load(ctx context.Context, paths []string, b *Batch, slot, inLen int, ls *loadState, bigImage *sync.Mutex) {
	if err := ctx.Err(); err != nil {
		b.slotErr[slot] = err
		return
	}
	var err error
	if r.Read != nil {
		ls.buf, err = r.Read(ctx, b.slotIdx[slot], ls.buf)
	} else {
		ls.buf, err = readFile(paths[b.slotIdx[slot]], ls.buf)
	}
	if err == nil {
		b.slotHash[slot] = sha256.Sum256(ls.buf)
		dst := b.Input[slot*inLen : (slot+1)*inLen]
		if r.Skip != nil && r.Skip(b.slotHash[slot]) {
			err = errCached
		} else if _, w, h, cerr := imaging.DecodeConfig(ls.buf); cerr == nil && int64(w)*int64(h) > bigImagePixels {
			bigImage.Lock()
			err = r.Spec.LoadBytes(ls.buf, dst, &ls.scratch)
			ls.scratch, ls.buf = imaging.Scratch{}, nil
			bigImage.Unlock()
		} else {
			err = r.Spec.LoadBytes(ls.buf, dst, &ls.scratch)
		}
	}
	b.slotErr[slot] = err
}

// infer compacts the slots that decoded (failed and cached ones drop out,
// the rest move down in order) and runs them through the session.
func (r *Runner) infer(ctx context.Context, b *Batch, inLen int, sizes []int) error {
	b.Index = b.Index[:0]
	n := 0
	for s := 0; s < b.slots; s++ {
		if b.slotErr[s] != nil {
			continue
		}
		if n != s {
			copy(b.Input[n*inLen:(n+1)*inLen], b.Input[s*inLen:(s+1)*inLen])
		}
		b.Hash[n] = b.slotHash[s]
		b.Index = append(b.Index, b.slotIdx[s])
		n++
	}
	b.N = n
	if n == 0 {
		return nil
	}
	for k, s := range sizes {
		b.Outputs[k] = b.outFull[k][:n*s]
	}
	return r.Session.Run(ctx, b.Input[:n*inLen], n, b.Outputs...)
}

// MaxFileBytes bounds what readFile reads of one input file (1 GiB): no
// image headtune can decode is larger, and a file that lies about its size
// (a device, a file still growing) cannot exhaust memory.
const MaxFileBytes = 1 << 30

// readFile reads a whole regular file into buf, growing it as needed, so
// that workers reuse one buffer for every image. Anything but a regular file
// (a FIFO would block in open, /dev/zero never ends) is refused before it is
// opened.
func readFile(path string, buf []byte) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return buf[:0], err
	}
	if st.IsDir() {
		return buf[:0], errors.New("is a directory")
	}
	if !st.Mode().IsRegular() {
		return buf[:0], fmt.Errorf("not a regular file (%s)", fileKind(st.Mode()))
	}
	if st.Size() > MaxFileBytes {
		return buf[:0], fmt.Errorf("file of %d bytes is larger than the %d-byte limit", st.Size(), MaxFileBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return buf[:0], err
	}
	defer f.Close()
	size := int(st.Size())
	if cap(buf) < size+1 {
		buf = make([]byte, size+1+size/4)
	}
	buf = buf[:0]
	r := io.LimitReader(f, MaxFileBytes+1)
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > MaxFileBytes {
				return buf[:0], fmt.Errorf("file grew past the %d-byte limit while being read", MaxFileBytes)
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
