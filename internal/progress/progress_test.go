package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFmtDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0:00"}, {59 * time.Second, "0:59"}, {61 * time.Second, "1:01"}, {3723 * time.Second, "1:02:03"}} {
		if got := fmtDuration(tc.d); got != tc.want {
			t.Errorf("fmtDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestLine: off a terminal (or quiet) nothing is drawn but Printf lines
// still reach the writer; on one, the line redraws in place and Done clears
// it.
func TestLine(t *testing.T) {
	var buf bytes.Buffer
	off := &Line{w: &buf, label: "extract", start: time.Now()}
	off.Update(5, 10, 5, "")
	off.Printf("skipped %s\n", "a.png")
	off.Done()
	if got := buf.String(); got != "skipped a.png\n" {
		t.Errorf("disabled line wrote %q", got)
	}
	buf.Reset()
	on := &Line{w: &buf, enabled: true, label: "extract", start: time.Now().Add(-time.Second)}
	on.Update(5, 10, 5, "  reused 0")
	on.Done()
	out := buf.String()
	if !strings.HasPrefix(out, "\r\x1b[Kextract 5/10 (50%)") || !strings.Contains(out, "reused 0") || !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("enabled line wrote %q", out)
	}
}
