package cliargs

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestInterspersed(t *testing.T) {
	app := &cli.App{
		Flags: []cli.Flag{&cli.StringFlag{Name: "cache"}, &cli.BoolFlag{Name: "quiet"}, &cli.BoolFlag{Name: "json"}},
		Commands: []*cli.Command{
			{Name: "extract", Flags: []cli.Flag{&cli.IntFlag{Name: "batch"}}},
			{Name: "train", Flags: []cli.Flag{&cli.IntFlag{Name: "classes"}}},
			{Name: "predict", Flags: []cli.Flag{&cli.IntFlag{Name: "top"}}},
			{Name: "models", Subcommands: []*cli.Command{{Name: "pull", Flags: []cli.Flag{&cli.BoolFlag{Name: "force"}}}}},
		},
	}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"ht", "extract", "imgs", "--cache", "c", "--batch", "8"}, []string{"ht", "--cache", "c", "extract", "--batch", "8", "--", "imgs"}},
		{[]string{"ht", "--quiet", "train", "--classes", "7"}, []string{"ht", "--quiet", "train", "--classes", "7"}},
		{[]string{"ht", "predict", "a.jpg", "--top", "2", "b.jpg", "--json"}, []string{"ht", "--json", "predict", "--top", "2", "--", "a.jpg", "b.jpg"}},
		{[]string{"ht", "models", "pull", "resnet50", "--force"}, []string{"ht", "models", "pull", "--force", "--", "resnet50"}},
		{[]string{"ht", "predict", "--", "-odd.jpg"}, []string{"ht", "predict", "--", "-odd.jpg"}},
		{[]string{"ht", "extract", "imgs", "--cache=c"}, []string{"ht", "--cache=c", "extract", "--", "imgs"}},
	} {
		if got := Interspersed(app, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Interspersed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		w, h int
		ok   bool
	}{{"", 0, 0, true}, {"224x224", 224, 224, true}, {"320x240", 320, 240, true}, {"299", 299, 299, true}, {"0x5", 0, 0, false}, {"abc", 0, 0, false}} {
		w, h, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || w != tc.w || h != tc.h {
			t.Errorf("ParseSize(%q) = %d, %d, %v", tc.in, w, h, err)
		}
	}
}

func TestRefuseUnknownCommands(t *testing.T) {
	app := &cli.App{Name: "ht", Commands: []*cli.Command{
		{Name: "train", Action: func(*cli.Context) error { return nil }},
		{Name: "cache", Subcommands: []*cli.Command{{Name: "list", Action: func(*cli.Context) error { return nil }}, {Name: "verify"}}},
	}}
	wrapped := errors.New("wrapped")
	RefuseUnknownCommands(app, func(err error) error { return fmt.Errorf("%w: %w", wrapped, err) })
	for _, tc := range []struct {
		args []string
		want string // "" for success
	}{
		{[]string{"ht", "train"}, ""},
		{[]string{"ht", "cache", "list"}, ""},
		{[]string{"ht", "foo"}, `unknown command "foo"; commands: cache, help, train`},
		{[]string{"ht", "cache", "frob"}, `unknown command "cache frob"; commands: list, verify`},
	} {
		var buf bytes.Buffer
		app.Writer = &buf
		err := app.Run(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, wrapped)):
			t.Errorf("%v: error %v, want %q through wrap", tc.args, err, tc.want)
		}
	}
}

func TestFacesArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"headtune", "extract", "d", "--faces"}, []string{"headtune", "extract", "d", "--faces"}},
		{[]string{"headtune", "extract", "d", "--faces", "all"}, []string{"headtune", "extract", "d", "--faces", "--faces-all"}},
		{[]string{"headtune", "predict", "--faces", "largest", "p"}, []string{"headtune", "predict", "--faces", "--faces-largest", "p"}},
		{[]string{"headtune", "extract", "--faces=all", "d"}, []string{"headtune", "extract", "--faces", "--faces-all", "d"}},
		{[]string{"headtune", "predict", "--faces", "photos"}, []string{"headtune", "predict", "--faces", "photos"}},
		{[]string{"headtune", "predict", "--", "--faces", "all"}, []string{"headtune", "predict", "--", "--faces", "all"}},
	}
	for _, tc := range tests {
		if got := FacesArgs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("FacesArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
