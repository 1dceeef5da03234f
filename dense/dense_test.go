package dense

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Layer{In: 2, Out: 3, W: make([]float32, 6), B: make([]float32, 3), Act: ActReLU}
	tests := []struct {
		name string
		edit func(*Layer)
		want string // substring of the error, "" for valid
	}{
		{"valid", func(*Layer) {}, ""},
		{"no activation", func(l *Layer) { l.Act = ActNone }, ""},
		{"zero inputs", func(l *Layer) { l.In = 0 }, "invalid shape 3x0"},
		{"negative outputs", func(l *Layer) { l.Out = -1 }, "invalid shape -1x2"},
		{"too wide", func(l *Layer) { l.In = MaxWidth + 1 }, "too large"},
		{"too many weights", func(l *Layer) { l.In, l.Out = MaxWidth, MaxWidth }, "too large"},
		{"short weights", func(l *Layer) { l.W = l.W[:5] }, "5 weights for shape 3x2"},
		{"long biases", func(l *Layer) { l.B = make([]float32, 4) }, "4 biases for 3 outputs"},
		{"unknown activation", func(l *Layer) { l.Act = "gelu" }, `unknown activation "gelu"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ok.Clone()
			tc.edit(&l)
			err := l.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid layer rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	l := Layer{In: 1, Out: 1, W: []float32{1}, B: []float32{2}}
	c := l.Clone()
	c.W[0], c.B[0] = 9, 9
	if l.W[0] != 1 || l.B[0] != 2 {
		t.Fatalf("Clone shares memory with the original: %v %v", l.W, l.B)
	}
}
