package featcache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Key is the content address of one image: the SHA-256 of its file bytes.
// Two files with identical bytes share a Key (and so share cached features),
// whatever their paths; renaming a file keeps its Key.
type Key [32]byte

// HashBytes returns the Key of an image's raw file bytes (SHA-256). The slice
// is only read.
func HashBytes(data []byte) Key { return Key(sha256.Sum256(data)) }

// HashReader returns the Key of everything r yields until EOF.
func HashReader(r io.Reader) (Key, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return Key{}, err
	}
	var k Key
	h.Sum(k[:0])
	return k, nil
}

// HashFile returns the Key of the file at path, streaming it (constant memory).
func HashFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	k, err := HashReader(f)
	if err != nil {
		return Key{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return k, nil
}

// String returns the Key as 64 lower-case hex digits, the form used in views
// and reports.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// MarshalText implements encoding.TextMarshaler (64 hex digits).
func (k Key) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(k)))
	hex.Encode(b, k[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts exactly 64
// hex digits of either case.
func (k *Key) UnmarshalText(text []byte) error {
	if len(text) != 2*len(k) {
		return fmt.Errorf("key %q: want %d hex digits, got %d", truncForMsg(text), 2*len(k), len(text))
	}
	var tmp Key
	if _, err := hex.Decode(tmp[:], text); err != nil {
		return fmt.Errorf("key %q: %w", truncForMsg(text), err)
	}
	*k = tmp
	return nil
}

// ParseKey parses the 64-hex-digit form written by Key.String.
func ParseKey(s string) (Key, error) {
	var k Key
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// truncForMsg keeps error messages one short line even for hostile input.
func truncForMsg(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
