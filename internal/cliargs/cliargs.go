// Package cliargs lets headtune's users put flags after positional
// arguments, as they type them, although urfave/cli v2 stops reading flags
// at the first positional argument.
package cliargs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Interspersed moves flags that follow positional arguments in front of
// them, so that `headtune extract ./images --cache DIR` works as users type
// it (urfave/cli v2 stops reading flags at the first positional argument).
// Everything after a literal "--" is left alone.
func Interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	// Global flags and the command path.
	cmds := app.Commands
	flags := app.Flags
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "-" && a != "--" {
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			i++
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		i++
		cmds, flags = next.Subcommands, next.Flags
		if len(next.Subcommands) == 0 {
			break
		}
	}
	var positional, global []string
	for i < len(args) {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			// A global flag given after the command (`extract DIR --cache
			// X`) moves to the front, where urfave/cli reads it.
			dst := &out
			fl := flags
			if !hasFlag(flags, a) && hasFlag(app.Flags, a) {
				dst, fl = &global, app.Flags
			}
			*dst = append(*dst, a)
			if takesValue(fl, a) && i+1 < len(args) {
				*dst = append(*dst, args[i+1])
				i++
			}
		} else {
			positional = append(positional, a)
		}
		i++
	}
	if len(global) > 0 {
		out = append([]string{out[0]}, append(global, out[1:]...)...)
	}
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

// takesValue reports whether flag argument a (like "--cache" or "-o") names
// a flag that reads the next argument as its value.
func takesValue(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}

func hasFlag(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// RefuseUnknownCommands makes app and every command with subcommands answer
// an unknown command with `unknown command "NAME"` and the list of
// commands (urfave/cli's default, "No help topic for 'NAME'", names none),
// and show help when given no command. wrap may attach an exit status.
func RefuseUnknownCommands(app *cli.App, wrap func(error) error) {
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return wrap(unknownCommand(c.Args().First(), c.App.Commands))
		}
		return cli.ShowAppHelp(c)
	}
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if len(c.Subcommands) == 0 {
				continue
			}
			sub, name := c.Subcommands, c.Name
			c.Action = func(ctx *cli.Context) error {
				if ctx.NArg() > 0 {
					return wrap(unknownCommand(name+" "+ctx.Args().First(), sub))
				}
				return cli.ShowSubcommandHelp(ctx)
			}
			walk(sub)
		}
	}
	walk(app.Commands)
}

func unknownCommand(name string, cmds []*cli.Command) error {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return fmt.Errorf("unknown command %q; commands: %s (--help explains them)", name, strings.Join(names, ", "))
}

// ParseSize reads an --input-size value: "WxH", or "N" for NxN; "" is 0, 0
// (not given).
func ParseSize(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	var w, h int
	if n, err := fmt.Sscanf(s, "%dx%d", &w, &h); n != 2 || err != nil || w <= 0 || h <= 0 {
		if n, err := fmt.Sscanf(s, "%d", &w); n == 1 && err == nil && w > 0 && fmt.Sprint(w) == s {
			return w, w, nil
		}
		return 0, 0, fmt.Errorf("--input-size %q: expected WxH, e.g. 224x224", s)
	}
	return w, h, nil
}

// FacesArgs turns `--faces all` and `--faces largest` into flags urfave/cli
// can read: --faces (a boolean) plus --faces-all or --faces-largest.
func FacesArgs(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case a == "--faces=all" || a == "--faces=largest":
			out = append(out, "--faces", "--faces-"+a[len("--faces="):])
		case a == "--faces" && i+1 < len(args) && (args[i+1] == "all" || args[i+1] == "largest"):
			out = append(out, a, "--faces-"+args[i+1])
			i++
		default:
			out = append(out, a)
		}
	}
	return out
}
