// Package cliargs lets headtune's users put flags after positional
// arguments, as they type them, although urfave/cli v2 stops reading flags
// at the first positional argument.
package cliargs

import (
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
