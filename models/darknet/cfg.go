// Package darknet imports Darknet networks (a .cfg text file and a .weights
// file, the format of YOLOv1-v4 and the Darknet-19/53 classifiers) as ONNX
// backbones built with backbone.Builder.
//
// The translation covers the layers of the YOLO family and its backbones:
// [convolutional] (batch-normalised or biased, grouped, leaky, linear,
// relu, logistic, mish, swish or tanh activations), [maxpool] (including
// stride 1 with Darknet's asymmetric padding), [avgpool], [shortcut],
// [route] (with groups), [upsample], [reorg], [connected], [dropout] and
// [softmax]. Detection heads ([yolo], [region], [detection]) and [cost]
// layers are cut away: the graph ends with the raw tensors that fed them.
// Batch normalisation is folded into the convolution weights, exactly as
// Darknet computes it at inference.
package darknet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Section is one [type] block of a cfg file. Options keep Darknet's rule
// for repeated keys: the first occurrence wins.
type Section struct {
	Type    string            // "net", "convolutional", ...; lower case as written
	Line    int               // 1-based line of the [type] header
	Options map[string]string // key -> value, whitespace removed
	Keys    []string          // keys in file order, each once
	used    map[string]bool
}

// Config is a parsed cfg file: the [net] section (Sections[0]) and the
// layers in order; Darknet numbers the layers from 0 after [net].
type Config struct {
	Name     string // file name, for messages
	Sections []*Section
}

// Net returns the [net] (or [network]) section.
func (c *Config) Net() *Section { return c.Sections[0] }

// Layers returns the sections after [net].
func (c *Config) Layers() []*Section { return c.Sections[1:] }

// maxCfgBytes bounds what ParseConfig reads: the largest Darknet cfgs are
// about 30 KB.
const maxCfgBytes = 16 << 20

// ParseConfig reads a cfg file as Darknet's parser does: all whitespace in
// a line is removed, lines starting with '#' or ';' and empty lines are
// skipped, "[type]" starts a section and "key=value" adds an option to it.
// The first section must be [net] or [network]. name is used in messages.
func ParseConfig(r io.Reader, name string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCfgBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxCfgBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes; not a Darknet cfg", name, maxCfgBytes)
	}
	c := &Config{Name: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxCfgBytes)
	line := 0
	var cur *Section
	for sc.Scan() {
		line++
		s := strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\r', '\n', '\v', '\f':
				return -1
			}
			return r
		}, sc.Text())
		if line == 1 {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		switch {
		case s == "" || s[0] == '#' || s[0] == ';':
			continue
		case s[0] == '[':
			if !strings.HasSuffix(s, "]") || len(s) < 3 {
				return nil, fmt.Errorf("%s:%d: malformed section header %q", name, line, clip(s))
			}
			cur = &Section{Type: strings.ToLower(s[1 : len(s)-1]), Line: line, Options: map[string]string{}, used: map[string]bool{}}
			c.Sections = append(c.Sections, cur)
		default:
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%s:%d: expected key=value or [section], got %q", name, line, clip(s))
			}
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: option %q before the first [section]", name, line, clip(k))
			}
			if _, dup := cur.Options[k]; !dup {
				cur.Options[k] = v
				cur.Keys = append(cur.Keys, k)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(c.Sections) == 0 {
		return nil, fmt.Errorf("%s: no sections; not a Darknet cfg", name)
	}
	if t := c.Sections[0].Type; t != "net" && t != "network" {
		return nil, fmt.Errorf("%s:%d: first section is [%s], a Darknet cfg starts with [net]", name, c.Sections[0].Line, t)
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// where names the section in messages: "yolov3.cfg:125 [route] (layer 83)".
func (s *Section) where(cfg string, layer int) string {
	if layer < 0 {
		return fmt.Sprintf("%s:%d [%s]", cfg, s.Line, s.Type)
	}
	return fmt.Sprintf("%s:%d [%s] (layer %d)", cfg, s.Line, s.Type, layer)
}

// Int returns the integer option key, def when absent. Darknet reads
// integers with atoi, so "1.0" is refused here rather than read as 1.
func (s *Section) Int(key string, def int) (int, error) {
	s.used[key] = true
	v, ok := s.Options[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("option %s=%q is not an integer", key, clip(v))
	}
	return n, nil
}

// Float returns the float option key, def when absent.
func (s *Section) Float(key string, def float64) (float64, error) {
	s.used[key] = true
	v, ok := s.Options[key]
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("option %s=%q is not a number", key, clip(v))
	}
	return f, nil
}

// String returns the option key, def when absent.
func (s *Section) String(key, def string) string {
	s.used[key] = true
	if v, ok := s.Options[key]; ok {
		return v
	}
	return def
}

// Ints returns a comma-separated integer list (route layers).
func (s *Section) Ints(key string) ([]int, error) {
	s.used[key] = true
	v, ok := s.Options[key]
	if !ok || v == "" {
		return nil, fmt.Errorf("option %s is missing", key)
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("option %s=%q: %q is not an integer", key, clip(v), clip(f))
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("option %s is empty", key)
	}
	return out, nil
}
