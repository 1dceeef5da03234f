package faces

import (
	"bytes"
	"testing"
)

func TestFindResultText(t *testing.T) {
	var f Face
	f.Box = Box{X: 10.4, Y: 20.6, W: 30, H: 40}
	f.Score = 0.9876
	f.Keypoints[RightEye] = Point{X: 15, Y: 25}
	f.Keypoints[LeftEye] = Point{X: 35, Y: 26}
	res := &FindResult{Images: []ImageFaces{
		{Path: "a.jpg", Faces: []Face{f}},
		{Path: "b.jpg"},
		{Path: "c.jpg", Error: "decode c.jpg: bad"},
	}, Faces: 1, Failed: 1}

	var tab bytes.Buffer
	if err := res.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	wantTab := "FILE   FACE  X   Y   W   H   SCORE  RIGHT EYE  LEFT EYE\n" +
		"a.jpg  0     10  21  30  40  0.988  15,25      35,26\n" +
		"b.jpg  -     no face found\n"
	if tab.String() != wantTab {
		t.Errorf("WriteTable:\n%q\nwant\n%q", tab.String(), wantTab)
	}

	tests := []struct{ dir, want string }{
		{"", "faces: 1 faces in 2 images, 1 unreadable\n"},
		{"out", "faces: 1 faces in 2 images, 1 unreadable; annotated copies in out\n"},
	}
	for _, tc := range tests {
		var sum bytes.Buffer
		if err := res.WriteSummary(&sum, tc.dir); err != nil {
			t.Fatal(err)
		}
		if sum.String() != tc.want {
			t.Errorf("WriteSummary(%q) = %q, want %q", tc.dir, sum.String(), tc.want)
		}
	}
}
