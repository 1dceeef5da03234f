// Package progress draws one self-overwriting status line (count, rate,
// ETA) on a terminal, and nothing anywhere else.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Line draws one self-overwriting status line (count, rate, ETA) on
// a terminal. On anything that is not a terminal, or with --quiet, it draws
// nothing: logs and pipes stay clean.
type Line struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	label   string
	start   time.Time
	last    time.Time
	drawn   bool
}

// New returns a Line labelled label, drawn on stderr when it is a
// terminal and quiet is false.
func New(label string, quiet bool) *Line {
	enabled := !quiet && term.IsTerminal(int(os.Stderr.Fd()))
	return &Line{w: os.Stderr, enabled: enabled, label: label, start: time.Now()}
}

// Update redraws at most ten times a second. done counts finished items of
// total; rateDone is the part of done that cost work (items reused from a
// cache finish instantly and would inflate the rate and ETA).
func (p *Line) Update(done, total, rateDone int, extra string) {
	p.draw(float64(done), float64(total), float64(rateDone), func(rate float64, eta string) string {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		return fmt.Sprintf("%d/%d (%.0f%%)  %.1f img/s  ETA %s%s", done, total, pct, rate, eta, extra)
	})
}

// UpdateBytes shows a download's progress in megabytes.
func (p *Line) UpdateBytes(done, total int64) {
	p.draw(float64(done), float64(total), float64(done), func(rate float64, eta string) string {
		return fmt.Sprintf("%.1f/%.1f MB  %.1f MB/s  ETA %s", float64(done)/1e6, float64(total)/1e6, rate/1e6, eta)
	})
}

// draw throttles, computes the rate of rateDone since the start and the ETA
// of the rest, and writes the line that text formats.
func (p *Line) draw(done, total, rateDone float64, text func(rate float64, eta string) string) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	rate := rateDone / max(now.Sub(p.start).Seconds(), 1e-9)
	eta := "--:--"
	if rate > 0 && total >= done {
		eta = fmtDuration(time.Duration((total - done) / rate * float64(time.Second)))
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %s", p.label, text(rate, eta))
	p.drawn = true
}

// Printf prints a line above the progress line (warnings about skipped
// files), keeping the progress line intact.
func (p *Line) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, format, args...)
	p.last = time.Time{}
}

// Done clears the line.
func (p *Line) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func fmtDuration(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
