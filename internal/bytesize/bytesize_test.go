package bytesize

import "testing"

func TestFormat(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{-1, "?"},
		{0, "0 B"},
		{999, "999 B"},
		{1000, "1 KB"},
		{12345, "12 KB"},
		{999_499, "999 KB"},
		{4_956_208, "5.0 MB"},
		{99_949_999, "99.9 MB"},
		{553_437_328, "553 MB"},
		{999_000_000, "999 MB"},
		{1_234_000_000, "1.2 GB"},
		{548_000_000_000, "548.0 GB"},
	}
	for _, tc := range tests {
		if got := Format(tc.n); got != tc.want {
			t.Errorf("Format(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
