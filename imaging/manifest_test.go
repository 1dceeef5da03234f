package imaging

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadManifest(t *testing.T) {
	tests := []struct {
		name, csv string
		want      []ManifestRow
		err       string // substring of the error; "" means success
	}{
		{name: "columns in any order and case", csv: "Split,LABEL,extra,path\nTRAIN, cat ,x, a.jpg\n,dog,y,b.jpg\n",
			want: []ManifestRow{{Line: 2, Path: "a.jpg", Label: "cat", Split: "train"}, {Line: 3, Path: "b.jpg", Label: "dog"}}},
		{name: "byte order mark", csv: "\ufeffpath,label\na.jpg,cat\n", want: []ManifestRow{{Line: 2, Path: "a.jpg", Label: "cat"}}},
		{name: "validation alias", csv: "path,label,split\na.jpg,cat,validation\n", want: []ManifestRow{{Line: 2, Path: "a.jpg", Label: "cat", Split: "val"}}},
		{name: "empty file", csv: "", err: "m.csv: empty file"},
		{name: "no label column", csv: "path,class\na.jpg,cat\n", err: "m.csv:1: header"},
		{name: "column twice", csv: "path,label,path\na,b,c\n", err: `m.csv:1: column "path" appears twice`},
		{name: "no rows", csv: "path,label\n", err: "m.csv: no rows after the header"},
		{name: "empty path", csv: "path,label\n,cat\n", err: "m.csv:2: empty path"},
		{name: "empty label", csv: "path,label\na.jpg,\n", err: "m.csv:2: empty label for a.jpg"},
		{name: "unknown split", csv: "path,label,split\na.jpg,cat,holdout\n", err: `m.csv:2: split "holdout"`},
		{name: "ragged row", csv: "path,label\na.jpg,cat\nb.jpg\n", err: "m.csv:3:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []ManifestRow
			err := ReadManifest(strings.NewReader(tc.csv), "m.csv", func(r ManifestRow) error {
				got = append(got, r)
				return nil
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("rows %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestReadManifestStops: the callback's error ends the reading unchanged.
func TestReadManifestStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := ReadManifest(strings.NewReader("path,label\na,x\nb,y\nc,z\n"), "m.csv", func(ManifestRow) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("err %v after %d rows, want the callback's error after 2", err, n)
	}
}
