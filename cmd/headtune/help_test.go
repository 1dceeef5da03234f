package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/imaging"
)

// helpTexts renders --help of the app and of every command and
// subcommand: path ("train", "models add") -> text.
func helpTexts(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix []string, cmds []*cli.Command)
	render := func(path []string) {
		app := newApp()
		var buf bytes.Buffer
		app.Writer, app.ErrWriter = &buf, &buf
		args := append(append([]string{"headtune"}, path...), "--help")
		if err := app.Run(args); err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		out[strings.Join(path, " ")] = buf.String()
	}
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Name == "help" {
				continue
			}
			p := append(append([]string{}, prefix...), c.Name)
			render(p)
			walk(p, c.Subcommands)
		}
	}
	render(nil)
	walk(nil, newApp().Commands)
	return out
}

// TestHelpText: every flag says what it does; defaults shown are the real
// ones (no -1 or 0 placeholders, no default stated twice); placeholders
// are words meant as placeholders (urfave/cli takes any `quoted` word of a
// usage string as one, which once gave "--model headtune export").
func TestHelpText(t *testing.T) {
	flagLine := regexp.MustCompile(`^\s+(-{1,2}[\w-]+)((?:\s+\S+)?(?: \[ [^\]]* \])?(?:, -{1,2}[\w-]+(?:\s+\S+)?)*)\s{2,}(.*)$`)
	placeholder := regexp.MustCompile(`^-{1,2}[\w-]+ ([^\s,]+)`)
	for path, text := range helpTexts(t) {
		inOptions := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasSuffix(strings.TrimSpace(line), "OPTIONS:") {
				inOptions = true
				continue
			}
			if !inOptions || strings.TrimSpace(line) == "" {
				continue
			}
			m := flagLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%q: flag line without a description: %q", path, line)
				continue
			}
			desc := m[3]
			if strings.HasPrefix(desc, "(default") {
				t.Errorf("%q: flag %s has no description: %q", path, m[1], line)
			}
			if strings.Contains(desc, "(default: -1)") {
				t.Errorf("%q: placeholder default -1 shown: %q", path, line)
			}
			if strings.Count(desc, "(default") > 1 {
				t.Errorf("%q: default stated twice: %q", path, line)
			}
			if regexp.MustCompile(`\(0: [^)]*\) \(default: 0\)`).MatchString(desc) {
				t.Errorf("%q: 0 explained in the usage and shown as the default: %q", path, line)
			}
			for _, name := range strings.Split(m[1]+m[2], ", ") {
				if p := placeholder.FindStringSubmatch(strings.TrimSpace(name)); p != nil && p[1] != "value" && p[1] != strings.ToUpper(p[1]) {
					t.Errorf("%q: placeholder %q (from a `quoted` word in the usage?): %q", path, p[1], line)
				}
			}
		}
	}
}

// TestHelpNamesPresetsAndEnvironment: preset lists come from imaging's
// list, and every HEADTUNE_ variable the help mentions is documented in the
// README.
func TestHelpNamesPresetsAndEnvironment(t *testing.T) {
	texts := helpTexts(t)
	want := strings.Join(imaging.PresetNames, ", ")
	for _, path := range []string{"extract", "models add"} {
		if !strings.Contains(texts[path], want) {
			t.Errorf("%s --help does not list the presets %q:\n%s", path, want, texts[path])
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	env := regexp.MustCompile(`HEADTUNE_[A-Z_]+`)
	for path, text := range texts {
		for _, v := range env.FindAllString(text, -1) {
			if !strings.Contains(string(readme), v) {
				t.Errorf("%q --help mentions %s, which README.md does not document", path, v)
			}
		}
	}
}
