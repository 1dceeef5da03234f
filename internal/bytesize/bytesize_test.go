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

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"65536", 65536}, {"64KiB", 64 << 10}, {"4GiB", 4 << 30}, {"512 MB", 512e6}, {"1.5gib", 3 << 29}, {"2g", 2e9}, {" 10 b ", 10},
	} {
		if got, err := Parse(c.in); err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "GiB", "4 XB", "-1", "0", "0.1", "1e999GiB", "4GiBs"} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", bad, got)
		}
	}
}

func TestFormatBinary(t *testing.T) {
	for n, want := range map[int64]string{900: "900 B", 64 << 10: "64 KiB", 4 << 30: "4 GiB", 3 << 29: "1.5 GiB"} {
		if got := FormatBinary(n); got != want {
			t.Errorf("FormatBinary(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"4GiB", "1.5 mb", "", "9999999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil && n < 1 {
			t.Fatalf("Parse(%q) = %d without an error", s, n)
		}
	})
}
