//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// row is one line of the results table: a figure, the baseline it was
// measured against in the same run, their ratio, and the target.
type row struct {
	measurement, figure, baseline, ratio, target, met string
}

// report collects the table and the notes under it.
type report struct {
	rows  []row
	notes []string
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }
func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}
func (r *report) failed(section string, err error) { r.note("**FAILED** %s: %v", section, err) }

// write prints the table and notes as Markdown.
func (r *report) write(w io.Writer) {
	fmt.Fprintln(w, "| measurement | figure | baseline | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, x := range r.rows {
		cells := []string{x.measurement, x.figure, x.baseline, x.ratio, x.target, x.met}
		for i, c := range cells {
			if c == "" {
				c = "-"
			}
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// yesNo is the "met?" cell.
func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// dur formats a duration with three significant figures or so.
func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// thousands formats n with comma separators: 10000 -> "10,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
