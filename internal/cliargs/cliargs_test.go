package cliargs

import (
	"reflect"
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
