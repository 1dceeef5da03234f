package tfjs

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxLiteralDepth bounds nesting in ParseJSLiteral so hostile input cannot
// exhaust the stack. Keras topologies nest about 10 deep.
const maxLiteralDepth = 256

// ParseJSLiteral parses one JavaScript literal expression as minifiers write
// it: objects with bare, quoted or numeric keys, arrays, single- or
// double-quoted strings, numbers in any JS form (".5", "1e-3", "0x1f"),
// true/false/null and their minified spellings "!0", "!1", "void 0",
// "1/0" (Infinity). Values come back as JSON-like Go values: map[string]any,
// []any, string, float64, bool and nil. It returns the value and the number
// of bytes consumed (trailing text is left to the caller). The result shares
// no memory with src.
func ParseJSLiteral(src []byte) (any, int, error) {
	p := &jsParser{src: src}
	v, err := p.value(0)
	if err != nil {
		return nil, p.pos, err
	}
	return v, p.pos, nil
}

type jsParser struct {
	src []byte
	pos int
}

func (p *jsParser) errorf(format string, args ...any) error {
	return fmt.Errorf("JS literal at byte %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *jsParser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsParser) value(depth int) (any, error) {
	if depth > maxLiteralDepth {
		return nil, p.errorf("nested deeper than %d", maxLiteralDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.src) {
		return nil, p.errorf("unexpected end of input")
	}
	c := p.src[p.pos]
	switch {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"' || c == '\'':
		return p.str()
	case c == '!':
		p.pos++
		if p.pos < len(p.src) && (p.src[p.pos] == '0' || p.src[p.pos] == '1') {
			b := p.src[p.pos] == '0'
			p.pos++
			return b, nil
		}
		return nil, p.errorf("only !0 and !1 are understood after '!'")
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	case isIdentStart(c):
		id := p.ident()
		switch id {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		case "Infinity":
			return math.Inf(1), nil
		case "NaN":
			return math.NaN(), nil
		case "void":
			p.skipSpace()
			if _, err := p.number(); err != nil {
				return nil, p.errorf("expected a number after void")
			}
			return nil, nil
		}
		return nil, p.errorf("identifier %q is not a literal (the module computes its value; unwrap it with node: scripts/tfjs_unwrap.js)", id)
	}
	return nil, p.errorf("unexpected character %q", rune(c))
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || (c >= '0' && c <= '9')
}

func (p *jsParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) && isIdentPart(p.src[p.pos]) {
		p.pos++
	}
	return string(p.src[start:p.pos])
}

func (p *jsParser) object(depth int) (any, error) {
	p.pos++ // '{'
	m := map[string]any{}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errorf("unterminated object")
		}
		if p.src[p.pos] == '}' {
			p.pos++
			return m, nil
		}
		var key string
		c := p.src[p.pos]
		switch {
		case c == '"' || c == '\'':
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			key = s
		case isIdentStart(c):
			key = p.ident()
		case c >= '0' && c <= '9' || c == '.':
			f, err := p.number()
			if err != nil {
				return nil, err
			}
			key = strconv.FormatFloat(f, 'g', -1, 64)
		default:
			return nil, p.errorf("unexpected character %q where an object key belongs", rune(c))
		}
		p.skipSpace()
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return nil, p.errorf("expected ':' after key %q", key)
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[key] = v
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errorf("unterminated object")
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case '}':
		default:
			return nil, p.errorf("expected ',' or '}' after the value of %q", key)
		}
	}
}

func (p *jsParser) array(depth int) (any, error) {
	p.pos++ // '['
	a := []any{}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errorf("unterminated array")
		}
		if p.src[p.pos] == ']' {
			p.pos++
			return a, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, p.errorf("unterminated array")
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case ']':
		default:
			return nil, p.errorf("expected ',' or ']' in array")
		}
	}
}

// str parses a quoted string. Strings without escapes (the multi-megabyte
// base64 weight payloads) are copied in one piece.
func (p *jsParser) str() (string, error) {
	q := p.src[p.pos]
	start := p.pos + 1
	end := bytes.IndexByte(p.src[start:], q)
	if end < 0 {
		return "", p.errorf("unterminated string")
	}
	if bytes.IndexByte(p.src[start:start+end], '\\') < 0 && bytes.IndexByte(p.src[start:start+end], '\n') < 0 {
		p.pos = start + end + 1
		return string(p.src[start : start+end]), nil
	}
	var b []byte
	i := start
	for {
		if i >= len(p.src) {
			p.pos = i
			return "", p.errorf("unterminated string")
		}
		c := p.src[i]
		switch {
		case c == q:
			p.pos = i + 1
			return string(b), nil
		case c == '\n' || c == '\r':
			p.pos = i
			return "", p.errorf("line break inside a string")
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		i++ // backslash
		if i >= len(p.src) {
			p.pos = i
			return "", p.errorf("unterminated string")
		}
		e := p.src[i]
		i++
		switch e {
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case 'r':
			b = append(b, '\r')
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'v':
			b = append(b, '\v')
		case '0':
			b = append(b, 0)
		case '\n':
			// line continuation
		case 'x', 'u':
			n := 2
			if e == 'u' {
				n = 4
			}
			if i+n > len(p.src) {
				p.pos = i
				return "", p.errorf("short \\%c escape", e)
			}
			v, err := strconv.ParseUint(string(p.src[i:i+n]), 16, 32)
			if err != nil {
				p.pos = i
				return "", p.errorf("bad \\%c escape", e)
			}
			i += n
			r := rune(v)
			if utf16.IsSurrogate(r) && i+6 <= len(p.src) && p.src[i] == '\\' && p.src[i+1] == 'u' {
				if v2, err := strconv.ParseUint(string(p.src[i+2:i+6]), 16, 32); err == nil {
					if rr := utf16.DecodeRune(r, rune(v2)); rr != utf8.RuneError {
						r = rr
						i += 6
					}
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			b = append(b, e)
		}
	}
}

var jsNumber = regexp.MustCompile(`^[-+]?(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)`)

// number parses a JS number, including the minified infinity "1/0".
func (p *jsParser) number() (float64, error) {
	m := jsNumber.Find(p.src[p.pos:])
	if m == nil {
		return 0, p.errorf("bad number")
	}
	s := string(m)
	var f float64
	var err error
	neg := false
	t := s
	if t[0] == '-' || t[0] == '+' {
		neg = t[0] == '-'
		t = t[1:]
	}
	if len(t) > 2 && (t[1] == 'x' || t[1] == 'X') {
		var u uint64
		u, err = strconv.ParseUint(t[2:], 16, 64)
		f = float64(u)
	} else {
		f, err = strconv.ParseFloat(t, 64)
	}
	if err != nil {
		return 0, p.errorf("bad number %q", s)
	}
	if neg {
		f = -f
	}
	p.pos += len(m)
	// Minifiers write Infinity as 1/0.
	if p.pos+1 < len(p.src) && p.src[p.pos] == '/' && p.src[p.pos+1] == '0' &&
		(p.pos+2 >= len(p.src) || !isIdentPart(p.src[p.pos+2]) && p.src[p.pos+2] != '.') {
		p.pos += 2
		switch {
		case f > 0:
			return math.Inf(1), nil
		case f < 0:
			return math.Inf(-1), nil
		}
		return math.NaN(), nil
	}
	return f, nil
}

// findExports returns the offsets of the literal's first byte in every
// "<ident>.exports = <literal>" assignment of a bundle. It scans with
// bytes.Index rather than a regexp: weight modules are megabytes of base64,
// where a regexp costs seconds.
func findExports(src []byte) []int {
	const key = ".exports"
	var out []int
	for i := 0; ; {
		j := bytes.Index(src[i:], []byte(key))
		if j < 0 {
			return out
		}
		j += i
		i = j + len(key)
		if j == 0 || !isIdentPart(src[j-1]) {
			continue
		}
		if i < len(src) && isIdentPart(src[i]) { // ".exportsFoo"
			continue
		}
		k := i
		for k < len(src) && (src[k] == ' ' || src[k] == '\t' || src[k] == '\n' || src[k] == '\r') {
			k++
		}
		if k >= len(src) || src[k] != '=' || (k+1 < len(src) && src[k+1] == '=') {
			continue
		}
		k++
		for k < len(src) && (src[k] == ' ' || src[k] == '\t' || src[k] == '\n' || src[k] == '\r') {
			k++
		}
		if k < len(src) && (src[k] == '{' || src[k] == '[' || src[k] == '"' || src[k] == '\'') {
			out = append(out, k)
		}
	}
}

// UnwrapJSModule extracts the value a minified weights module (TF.js
// models shipped as browserify bundles, such as nsfwjs's model.min.js and
// group1-shardNofM.min.js) exports, without running it: it finds the one
// "<module>.exports = <literal>" assignment and parses the literal. Model
// modules export the model.json object; shard modules export a base64
// string. A module that computes its export (anything but a literal) is
// refused with an error that names the problem. src is not retained.
func UnwrapJSModule(src []byte) (any, error) {
	locs := findExports(src)
	switch len(locs) {
	case 0:
		return nil, fmt.Errorf("no \"module.exports = <literal>\" assignment found")
	case 1:
	default:
		return nil, fmt.Errorf("%d \"module.exports\" assignments found, expected one", len(locs))
	}
	start := locs[0]
	v, n, err := ParseJSLiteral(src[start:])
	if err != nil {
		return nil, err
	}
	rest := bytes.TrimLeft(src[start+n:], " \t\r\n")
	if len(rest) > 0 && rest[0] != '}' && rest[0] != ';' && rest[0] != ',' {
		return nil, fmt.Errorf("the exported literal is followed by %q: the module computes its export (unwrap it with node: scripts/tfjs_unwrap.js)", string(rest[:min(len(rest), 20)]))
	}
	return v, nil
}

// unwrapBase64Module decodes the base64 string that a weight shard module
// exports. Plain payloads (no escapes, the usual case) are decoded straight
// from src without first copying them into a string; anything else goes
// through UnwrapJSModule. The result is a new slice.
func unwrapBase64Module(src []byte) ([]byte, error) {
	locs := findExports(src)
	if len(locs) == 1 && (src[locs[0]] == '"' || src[locs[0]] == '\'') {
		start := locs[0] + 1
		if end := bytes.IndexByte(src[start:], src[locs[0]]); end >= 0 {
			payload := src[start : start+end]
			rest := bytes.TrimLeft(src[start+end+1:], " \t\r\n")
			if bytes.IndexByte(payload, '\\') < 0 && (len(rest) == 0 || rest[0] == '}' || rest[0] == ';' || rest[0] == ',') {
				dst := make([]byte, base64.StdEncoding.DecodedLen(len(payload)))
				n, err := base64.StdEncoding.Decode(dst, payload)
				if err != nil {
					return nil, fmt.Errorf("bad base64: %w", err)
				}
				return dst[:n], nil
			}
		}
	}
	v, err := UnwrapJSModule(src)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("exports a %T, expected a base64 string", v)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return b, nil
}
