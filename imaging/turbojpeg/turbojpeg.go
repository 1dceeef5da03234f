// Package turbojpeg decodes JPEG images through libjpeg-turbo's TurboJPEG
// API, loaded at run time with dlopen, with optional DCT-domain downscaling
// (decode directly at 1/2, 1/4 or 1/8 of the stored size).
//
// The library is not needed to build or run a program that imports this
// package: when it is absent, [Available] reports false and every decode
// returns [ErrUnavailable], so callers fall back to a pure-Go decoder. No
// TurboJPEG header is needed at build time either; the few types and
// functions used (TurboJPEG API 2.x: tjInitDecompress, tjDecompressHeader3,
// tjGetScalingFactors, tjDecompress2, tjDestroy, tjGetErrorStr2) are
// declared by hand below and resolved with dlsym.
//
// Library search, done once on first use: the path in the environment
// variable HEADTUNE_TURBOJPEG_LIB if it is set (and only that path), else
// libturbojpeg.so.0, then libturbojpeg.so through the system loader. [Load]
// picks a library explicitly before first use.
//
// Blank-importing the package also installs it as the imaging package's fast
// JPEG decoder (see register.go).
//
// All functions are safe for concurrent use. TurboJPEG handles are not
// thread-safe; the package keeps a free list of them and gives each call its
// own, so decoding scales with goroutines.
package turbojpeg

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

// TurboJPEG 2.x declarations, written out by hand so that no -dev package is
// needed at build time. They match turbojpeg.h of libjpeg-turbo 1.4 to 2.1
// (and the backward-compatible API that 3.x keeps).
typedef void *tjhandle;
typedef struct { int num; int denom; } tjscalingfactor;

typedef tjhandle (*ht_tjInitDecompress_fn)(void);
typedef int (*ht_tjDecompressHeader3_fn)(tjhandle, const unsigned char *,
	unsigned long, int *, int *, int *, int *);
typedef tjscalingfactor *(*ht_tjGetScalingFactors_fn)(int *);
typedef int (*ht_tjDecompress2_fn)(tjhandle, const unsigned char *,
	unsigned long, unsigned char *, int, int, int, int, int);
typedef int (*ht_tjDestroy_fn)(tjhandle);
typedef char *(*ht_tjGetErrorStr2_fn)(tjhandle);
typedef int (*ht_tjGetErrorCode_fn)(tjhandle);

typedef struct {
	void *lib;
	ht_tjInitDecompress_fn initDecompress;
	ht_tjDecompressHeader3_fn decompressHeader3;
	ht_tjGetScalingFactors_fn getScalingFactors;
	ht_tjDecompress2_fn decompress2;
	ht_tjDestroy_fn destroy;
	ht_tjGetErrorStr2_fn getErrorStr2;
	ht_tjGetErrorCode_fn getErrorCode; // optional (TurboJPEG 2.0+)
	int api3;                          // tj3Init present (libjpeg-turbo 3.x)
} ht_tj_api;

// Written once by ht_tj_load under the Go-side load lock, before any other
// function here is called, and never changed afterwards.
static ht_tj_api ht_tj;

// ht_tj_load opens path and resolves the symbols. It returns 0 on success;
// otherwise it writes a message into err (n bytes) and returns -1.
static int ht_tj_load(const char *path, char *err, size_t n) {
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "dlopen failed", n - 1);
		err[n - 1] = 0;
		return -1;
	}
	ht_tj_api a;
	memset(&a, 0, sizeof a);
	a.lib = lib;
	const char *missing = NULL;
#define HT_SYM(field, name, type) \
	a.field = (type)dlsym(lib, name); \
	if (a.field == NULL && missing == NULL) missing = name;
	HT_SYM(initDecompress, "tjInitDecompress", ht_tjInitDecompress_fn)
	HT_SYM(decompressHeader3, "tjDecompressHeader3", ht_tjDecompressHeader3_fn)
	HT_SYM(getScalingFactors, "tjGetScalingFactors", ht_tjGetScalingFactors_fn)
	HT_SYM(decompress2, "tjDecompress2", ht_tjDecompress2_fn)
	HT_SYM(destroy, "tjDestroy", ht_tjDestroy_fn)
	HT_SYM(getErrorStr2, "tjGetErrorStr2", ht_tjGetErrorStr2_fn)
#undef HT_SYM
	if (missing != NULL) {
		snprintf(err, n, "%s: symbol %s not found (need TurboJPEG API 2.0 or newer)", path, missing);
		dlclose(lib);
		return -1;
	}
	a.getErrorCode = (ht_tjGetErrorCode_fn)dlsym(lib, "tjGetErrorCode");
	a.api3 = dlsym(lib, "tj3Init") != NULL;
	ht_tj = a;
	return 0;
}

// ht_tj_path writes the file the library was loaded from into out.
static void ht_tj_path(char *out, size_t n) {
	Dl_info info;
	out[0] = 0;
	if (ht_tj.initDecompress != NULL && dladdr((void *)ht_tj.initDecompress, &info) != 0 && info.dli_fname != NULL) {
		strncpy(out, info.dli_fname, n - 1);
		out[n - 1] = 0;
	}
}

static int ht_tj_api3(void) { return ht_tj.api3; }
static int ht_tj_has_errcode(void) { return ht_tj.getErrorCode != NULL; }
static tjhandle ht_tj_init(void) { return ht_tj.initDecompress(); }
static int ht_tj_destroy(tjhandle h) { return ht_tj.destroy(h); }
static tjscalingfactor *ht_tj_scaling_factors(int *n) { return ht_tj.getScalingFactors(n); }

// ht_tj_err returns the last error message of h and whether it was only a
// warning (1) or fatal/unknown (0).
static const char *ht_tj_err(tjhandle h, int *warning) {
	*warning = 0;
	if (ht_tj.getErrorCode != NULL) {
		*warning = ht_tj.getErrorCode(h) == 0; // TJERR_WARNING
	}
	return ht_tj.getErrorStr2(h);
}

static int ht_tj_header(tjhandle h, const unsigned char *buf, unsigned long size,
		int *w, int *hh, int *subsamp, int *cs) {
	return ht_tj.decompressHeader3(h, buf, size, w, hh, subsamp, cs);
}

static int ht_tj_decompress(tjhandle h, const unsigned char *buf, unsigned long size,
		unsigned char *dst, int w, int pitch, int hh, int pf, int flags) {
	return ht_tj.decompress2(h, buf, size, dst, w, pitch, hh, pf, flags);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// EnvLibrary names the environment variable that, when set, is the only
// path tried when the library is loaded implicitly.
const EnvLibrary = "HEADTUNE_TURBOJPEG_LIB"

// DefaultLibraryNames are the names tried, in order, through the system
// loader when EnvLibrary is not set.
var DefaultLibraryNames = []string{"libturbojpeg.so.0", "libturbojpeg.so"}

// ErrUnavailable is returned (wrapped) by the decoders when libturbojpeg
// could not be loaded; [LoadError] says why.
var ErrUnavailable = errors.New("turbojpeg: libturbojpeg is not available")

// TurboJPEG constants (turbojpeg.h, API 2.x).
const (
	tjpfRGB            = 0
	tjflagFastUpsample = 256
	tjflagStopOnWarn   = 8192
	tjflagLimitScans   = 32768
)

// Scale is a DCT-domain scaling factor Num/Denom applied while decoding.
// Only 1/1, 1/2, 1/4 and 1/8 are used: they are the reductions that
// libjpeg-turbo implements with its fast reduced-size IDCTs (and the ones
// PIL's draft mode and OpenCV's IMREAD_REDUCED_* use).
type Scale struct {
	Num, Denom int
}

// Apply returns the size, in pixels, of a dimension of dim pixels decoded at
// scale s: ceil(dim*Num/Denom), as TurboJPEG's TJSCALED computes it.
func (s Scale) Apply(dim int) int {
	return (dim*s.Num + s.Denom - 1) / s.Denom
}

// String formats s as "num/denom".
func (s Scale) String() string { return fmt.Sprintf("%d/%d", s.Num, s.Denom) }

// reductions are the scales considered, smallest output first.
var reductions = [...]Scale{{1, 8}, {1, 4}, {1, 2}, {1, 1}}

// ScaleFor returns the strongest reduction among 1/8, 1/4, 1/2 and 1/1 whose
// output for a w x h image is at least minW x minH pixels. A non-positive
// minW or minH asks for the full size in that dimension, so ScaleFor(w, h,
// 0, 0) is 1/1. When even 1/1 is smaller than asked (upscaling is left to
// the caller's resize), the result is 1/1. ScaleFor needs no library.
//
// Sizes are in the JPEG's stored orientation: a caller that applies an EXIF
// orientation of 5 to 8 (a transpose) after decoding must pass its needed
// width as minH and its needed height as minW. For a square target or a
// shorter-side target (minW == minH) this makes no difference.
func ScaleFor(w, h, minW, minH int) Scale {
	if minW <= 0 {
		minW = w
	}
	if minH <= 0 {
		minH = h
	}
	for _, s := range reductions {
		if s.Apply(w) >= minW && s.Apply(h) >= minH {
			return s
		}
	}
	return Scale{1, 1}
}

// maxPixels bounds the decoded image size; see SetMaxPixels.
var maxPixels atomic.Int64

func init() { maxPixels.Store(1 << 28) }

// SetMaxPixels sets the largest decoded image, in pixels (width*height after
// scaling), that the decoders accept; larger images fail with an error
// before any memory is allocated. The default is 1<<28 (16384 x 16384), that
// is 768 MiB of RGB. n <= 0 restores the default. It returns the previous
// limit.
func SetMaxPixels(n int64) int64 {
	if n <= 0 {
		n = 1 << 28
	}
	return maxPixels.Swap(n)
}

// library state, written under loadMu.
var (
	loadMu    sync.Mutex
	loadDone  atomic.Bool // an attempt (implicit or explicit) has finished
	loaded    atomic.Bool // a library is loaded; set after the fields below
	loadErr   error
	libPath   string // as requested
	libFile   string // as resolved by the loader
	libAPI    string
	libScales map[Scale]bool
)

// Load loads libturbojpeg from path (a file path or a name for the system
// loader) before first use, instead of the implicit search. Loading the
// library that is already loaded (same path) is a no-op; once a library is
// loaded, another one cannot be, because the process keeps using the first.
// A failed Load may be retried with another path.
func Load(path string) error {
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded.Load() {
		if path == libPath {
			return nil
		}
		return fmt.Errorf("turbojpeg: load %s: %s is already loaded", path, libPath)
	}
	err := loadLocked(path)
	loadDone.Store(true)
	return err
}

func loadLocked(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	if C.ht_tj_load(cpath, &buf[0], C.size_t(len(buf))) != 0 {
		loadErr = fmt.Errorf("turbojpeg: load %s: %s", path, C.GoString(&buf[0]))
		return loadErr
	}
	var n C.int
	sf := C.ht_tj_scaling_factors(&n)
	scales := map[Scale]bool{}
	if sf != nil && n > 0 {
		for _, f := range unsafe.Slice(sf, int(n)) {
			scales[Scale{int(f.num), int(f.denom)}] = true
		}
	}
	for _, s := range reductions {
		if !scales[s] {
			loadErr = fmt.Errorf("turbojpeg: load %s: scaling factor %v not supported", path, s)
			return loadErr
		}
	}
	C.ht_tj_path(&buf[0], C.size_t(len(buf)))
	libFile = C.GoString(&buf[0])
	libPath = path
	switch {
	case C.ht_tj_api3() != 0:
		libAPI = "TurboJPEG 3.x (2.x API)"
	case C.ht_tj_has_errcode() != 0:
		libAPI = "TurboJPEG 2.x"
	default:
		libAPI = "TurboJPEG 2.x (no tjGetErrorCode)"
	}
	libScales = scales
	loadErr = nil
	loaded.Store(true)
	return nil
}

// ensure loads the library with the implicit search on first use.
func ensure() bool {
	if loadDone.Load() {
		return loaded.Load()
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if !loadDone.Load() {
		if p := os.Getenv(EnvLibrary); p != "" {
			_ = loadLocked(p)
		} else {
			var errs []error
			for _, name := range DefaultLibraryNames {
				if loadLocked(name) == nil {
					errs = nil
					break
				}
				errs = append(errs, loadErr)
			}
			if errs != nil {
				loadErr = errors.Join(errs...)
			}
		}
		loadDone.Store(true)
	}
	return loaded.Load()
}

// Available loads the library if that was not tried yet and reports whether
// it is usable.
func Available() bool { return ensure() }

// LoadError returns why the library is unavailable, or nil when it is
// loaded (or has not been looked for yet).
func LoadError() error {
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded.Load() {
		return nil
	}
	return loadErr
}

// Path returns the file the library was loaded from ("" when none is).
func Path() string {
	if !ensure() {
		return ""
	}
	return libFile
}

// Version describes the loaded library's API level, detected from the
// symbols it exports (libjpeg-turbo has no version query in the 2.x API),
// for example "TurboJPEG 2.x"; "" when none is loaded.
func Version() string {
	if !ensure() {
		return ""
	}
	return libAPI
}

// handle pool. TurboJPEG handles are not thread-safe: each decode takes one
// from the free list and returns it, so a handle is used by one goroutine at
// a time. At most maxIdle handles are kept; extra ones are destroyed.
var (
	poolMu   sync.Mutex
	poolFree []C.tjhandle
)

func getHandle() (C.tjhandle, error) {
	poolMu.Lock()
	if n := len(poolFree); n > 0 {
		h := poolFree[n-1]
		poolFree = poolFree[:n-1]
		poolMu.Unlock()
		return h, nil
	}
	poolMu.Unlock()
	h := C.ht_tj_init()
	if h == nil {
		return nil, errors.New("turbojpeg: tjInitDecompress failed")
	}
	return h, nil
}

// dropHandle destroys a handle after a failed call: TurboJPEG 2.x leaves
// the decompressor in an undefined state after an error (the next header
// read on it fails with "Bogus marker length"), so it is never reused.
func dropHandle(h C.tjhandle) { C.ht_tj_destroy(h) }

// putHandle returns a handle after a successful call.
func putHandle(h C.tjhandle) {
	poolMu.Lock()
	if len(poolFree) < 2*runtime.GOMAXPROCS(0) {
		poolFree = append(poolFree, h)
		h = nil
	}
	poolMu.Unlock()
	if h != nil {
		C.ht_tj_destroy(h)
	}
}

// Info is what a JPEG header says about the stored image.
type Info struct {
	Width, Height int // stored size in pixels, before any EXIF orientation
	Subsampling   int // TJSAMP_*: 0=4:4:4, 1=4:2:2, 2=4:2:0, 3=grey, 4=4:4:0, 5=4:1:1
	Colorspace    int // TJCS_*: 0=RGB, 1=YCbCr, 2=grey, 3=CMYK, 4=YCCK
}

// Error is a failure reported by libjpeg-turbo. Warning is true when the
// library classed it as a warning (for example "Premature end of JPEG
// file" for truncated data or extraneous bytes before a marker); the
// decoders stop on warnings and return no pixels, so a caller may retry
// with a more tolerant decoder.
type Error struct {
	Op      string // "header" or "decompress"
	Msg     string // libjpeg-turbo's message
	Warning bool
}

func (e *Error) Error() string {
	kind := "error"
	if e.Warning {
		kind = "warning"
	}
	return fmt.Sprintf("turbojpeg: %s: %s (%s)", e.Op, e.Msg, kind)
}

func tjError(op string, h C.tjhandle) error {
	var w C.int
	msg := C.GoString(C.ht_tj_err(h, &w))
	return &Error{Op: op, Msg: msg, Warning: w != 0}
}

func header(h C.tjhandle, data []byte) (Info, error) {
	var w, ht, ss, cs C.int
	if C.ht_tj_header(h, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)), &w, &ht, &ss, &cs) != 0 {
		return Info{}, tjError("header", h)
	}
	info := Info{Width: int(w), Height: int(ht), Subsampling: int(ss), Colorspace: int(cs)}
	if info.Width <= 0 || info.Height <= 0 {
		return Info{}, fmt.Errorf("turbojpeg: header: invalid size %dx%d", info.Width, info.Height)
	}
	return info, nil
}

func checkInput(data []byte) error {
	if !ensure() {
		return ErrUnavailable
	}
	if len(data) == 0 {
		return errors.New("turbojpeg: empty input")
	}
	return nil
}

// DecodeInfo reads the JPEG header in data and returns the stored size,
// chroma subsampling and colour space without decoding pixels.
func DecodeInfo(data []byte) (Info, error) {
	if err := checkInput(data); err != nil {
		return Info{}, err
	}
	h, err := getHandle()
	if err != nil {
		return Info{}, err
	}
	info, err := header(h, data)
	if err != nil {
		dropHandle(h)
		return Info{}, err
	}
	putHandle(h)
	return info, nil
}

// DecodeScaled decodes the JPEG in data to packed 8-bit RGB (3 bytes per
// pixel, rows of 3*w bytes, top row first), reducing it in the DCT domain by
// the strongest of 1/2, 1/4 and 1/8 whose output is still at least minW x
// minH pixels (see [ScaleFor] for the rules, non-positive values and EXIF
// orientation). The result is w x h pixels and pix has length 3*w*h.
//
// pix is dst[:3*w*h] when cap(dst) is large enough, so a caller that passes
// the previous result back decodes a stream of images without allocating;
// otherwise pix is newly allocated. The caller owns pix; the package keeps
// no reference to data, dst or pix after returning.
//
// Decoding uses libjpeg-turbo's defaults (accurate integer IDCT, "fancy"
// chroma upsampling), like PIL and OpenCV. Grey JPEGs are expanded to RGB.
// CMYK/YCCK JPEGs, corrupt or truncated data and anything the library warns
// about return an error (an [*Error] for library failures); nothing panics.
func DecodeScaled(data []byte, minW, minH int, dst []uint8) (w, h int, pix []uint8, err error) {
	return decode(data, minW, minH, dst, 0)
}

// Decode decodes the JPEG in data at its stored size to packed 8-bit RGB;
// it is DecodeScaled(data, 0, 0, dst).
func Decode(data []byte, dst []uint8) (w, h int, pix []uint8, err error) {
	return decode(data, 0, 0, dst, 0)
}

func decode(data []byte, minW, minH int, dst []uint8, flags int) (int, int, []uint8, error) {
	if err := checkInput(data); err != nil {
		return 0, 0, nil, err
	}
	h, err := getHandle()
	if err != nil {
		return 0, 0, nil, err
	}
	info, err := header(h, data)
	if err != nil {
		dropHandle(h)
		return 0, 0, nil, err
	}
	s := ScaleFor(info.Width, info.Height, minW, minH)
	w, ht := s.Apply(info.Width), s.Apply(info.Height)
	if int64(w)*int64(ht) > maxPixels.Load() {
		putHandle(h)
		return 0, 0, nil, fmt.Errorf("turbojpeg: image of %dx%d pixels (at scale %v) exceeds the limit of %d pixels", w, ht, s, maxPixels.Load())
	}
	n := 3 * w * ht
	var pix []uint8
	if cap(dst) >= n {
		pix = dst[:n]
	} else {
		pix = make([]uint8, n)
	}
	flags |= tjflagStopOnWarn | tjflagLimitScans
	if C.ht_tj_decompress(h, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)),
		(*C.uchar)(unsafe.Pointer(&pix[0])), C.int(w), C.int(3*w), C.int(ht), tjpfRGB, C.int(flags)) != 0 {
		err := tjError("decompress", h)
		dropHandle(h)
		return 0, 0, nil, err
	}
	putHandle(h)
	return w, ht, pix, nil
}
