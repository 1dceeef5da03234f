package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	onnxruntime "github.com/yalue/onnxruntime_go"
)

// LibraryEnv names the environment variable that points at ONNX
// Runtime's shared library. ONNXRUNTIME_SHARED_LIBRARY_PATH (the binding's
// own convention) is honoured after it.
const LibraryEnv = "HEADTUNE_ORT_LIB"

// ErrLibraryMissing is wrapped by the error returned when no usable ONNX
// Runtime library is found.
var ErrLibraryMissing = errors.New("ONNX Runtime shared library not found")

const runtimeHint = "run `make setup` (fetches onnxruntime-node's libonnxruntime.so.1 into .deps/), or point --ort-lib / " + LibraryEnv + " at libonnxruntime.so.1 (version 1.24 or newer)"

// LibraryCandidates lists, in search order, the places FindLibrary
// looks: the explicit path, HEADTUNE_ORT_LIB, ONNXRUNTIME_SHARED_LIBRARY_PATH,
// the repo-local setup folder (.deps/onnxruntime beside the executable, its
// parent folders, and the working directory's), the library `make setup`
// recorded (RecordedLibrary), then the system loader's names.
func LibraryCandidates(explicit string) []string {
	var c []string
	add := func(p string) {
		if p != "" {
			c = append(c, p)
		}
	}
	add(explicit)
	add(os.Getenv(LibraryEnv))
	add(os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH"))
	lib := "libonnxruntime.so.1"
	if runtime.GOOS == "darwin" {
		lib = "libonnxruntime.dylib"
	}
	var roots []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		roots = append(roots, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		roots = append(roots, wd)
	}
	seen := map[string]bool{}
	for _, r := range roots {
		// Walk up a few levels so bin/headtune and test binaries in package
		// folders find the repository's .deps.
		for i := 0; i < 6 && r != "" && !seen[r]; i++ {
			seen[r] = true
			add(filepath.Join(r, ".deps", "onnxruntime", lib))
			parent := filepath.Dir(r)
			if parent == r {
				break
			}
			r = parent
		}
	}
	add(RecordedLibrary())
	for _, d := range []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"} {
		add(filepath.Join(d, lib))
	}
	return c
}

// RecordFile is where `make setup` records the absolute path of the library
// it fetched: $HEADTUNE_HOME/onnxruntime-library, else
// onnxruntime-library in the user's configuration folder's headtune/
// ($XDG_CONFIG_HOME or ~/.config). A headtune binary copied out of the
// repository finds the library through it. "" when there is no such folder.
func RecordFile() string {
	if h := os.Getenv("HEADTUNE_HOME"); h != "" {
		return filepath.Join(h, "onnxruntime-library")
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "headtune", "onnxruntime-library")
}

// RecordedLibrary returns the path RecordFile holds ("" when there is none).
func RecordedLibrary() string {
	f := RecordFile()
	if f == "" {
		return ""
	}
	b, err := os.ReadFile(f)
	if err != nil || len(b) > 4096 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// FindLibrary returns the first existing candidate of
// LibraryCandidates. An explicit path or environment variable that names a
// missing file is an error rather than silently skipped: the user asked for
// that file.
func FindLibrary(explicit string) (string, error) {
	for i, env := range []string{explicit, os.Getenv(LibraryEnv), os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH")} {
		if env == "" {
			continue
		}
		if _, err := os.Stat(env); err != nil {
			src := [...]string{"--ort-lib", LibraryEnv, "ONNXRUNTIME_SHARED_LIBRARY_PATH"}[i]
			return "", fmt.Errorf("%w: %s=%s does not exist; %s", ErrLibraryMissing, src, env, runtimeHint)
		}
		return env, nil
	}
	for _, p := range LibraryCandidates("") {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w; %s", ErrLibraryMissing, runtimeHint)
}

var (
	runtimeMu   sync.Mutex
	runtimePath string
)

// Init loads ONNX Runtime and creates the process's one environment.
// It is safe to call many times: later calls with the same or an empty path
// are no-ops; a later call naming another library is an error, since a
// process can hold only one. The environment lives until Shutdown.
func Init(explicit string) (string, error) {
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	if onnxruntime.IsInitialized() {
		if explicit != "" && explicit != runtimePath {
			return runtimePath, fmt.Errorf("ONNX Runtime already loaded from %s; cannot also load %s", runtimePath, explicit)
		}
		return runtimePath, nil
	}
	path, err := FindLibrary(explicit)
	if err != nil {
		return "", err
	}
	onnxruntime.SetSharedLibraryPath(path)
	if err := onnxruntime.InitializeEnvironment(onnxruntime.WithLogLevelError()); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "API version") || strings.Contains(msg, "not supported") {
			return "", fmt.Errorf("load ONNX Runtime %s: %v (headtune needs ONNX Runtime 1.24 or newer; %s)", path, err, runtimeHint)
		}
		return "", fmt.Errorf("load ONNX Runtime %s: %v; %s", path, err, runtimeHint)
	}
	runtimePath = path
	return path, nil
}

// Version returns the loaded ONNX Runtime's version string.
func Version() string {
	if !onnxruntime.IsInitialized() {
		return ""
	}
	return onnxruntime.GetVersion()
}

// Shutdown destroys the process's environment. Sessions must have
// been closed first.
func Shutdown() error {
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	if !onnxruntime.IsInitialized() {
		return nil
	}
	runtimePath = ""
	return onnxruntime.DestroyEnvironment()
}
