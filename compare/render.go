package compare

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Lines renders a result one fact per line, in an order that makes two
// results line up: the answer, then what happened inside a tunnel, then
// what the origin received.
func (r Result) Lines() []string {
	if r.Skipped != "" {
		return []string{"skipped: " + r.Skipped}
	}
	var out []string
	r.answerLines(&out, "")
	if r.Tunnel != nil {
		r.Tunnel.answerLines(&out, "tunnel ")
	}
	if r.Origin == nil {
		out = append(out, "origin: nothing arrived")
		return out
	}
	v := r.Origin
	out = append(out, "origin: "+v.RequestLine)
	for _, f := range v.Fields {
		out = append(out, "origin  "+f.Name+": "+f.Value)
	}
	out = append(out, "origin body: "+v.Framing+" "+strconv.Quote(v.Body))
	for _, f := range v.Trailers {
		out = append(out, "origin trailer "+f.Name+": "+f.Value)
	}
	return out
}

func (r Result) answerLines(out *[]string, prefix string) {
	for _, s := range r.Interim {
		*out = append(*out, prefix+"interim: "+s)
	}
	status := r.Status
	if status == "" {
		status = "(no answer)"
	}
	*out = append(*out, prefix+"status: "+status)
	for _, f := range r.Fields {
		*out = append(*out, prefix+"  "+f.Name+": "+f.Value)
	}
	if r.Body != "" {
		*out = append(*out, prefix+"body: "+r.Body)
	}
	if r.Conn != "" {
		*out = append(*out, prefix+"connection: "+r.Conn)
	}
	if r.Err != "" {
		*out = append(*out, prefix+"error: "+r.Err)
	}
}

// Equal reports whether two results show the same behaviour.
func Equal(a, b Result) bool {
	la, lb := a.Lines(), b.Lines()
	if len(la) != len(lb) {
		return false
	}
	for i := range la {
		if la[i] != lb[i] {
			return false
		}
	}
	return true
}

// Diff renders a and b side by side, lines that differ marked with "|"
// (changed), "<" (only in a) or ">" (only in b), aligned on the longest
// common subsequence of their lines.
func Diff(leftName string, a Result, rightName string, b Result) string {
	la, lb := a.Lines(), b.Lines()
	const width = 64
	var sb strings.Builder
	fmt.Fprintf(&sb, "  %-*s   %s\n", width, leftName, rightName)
	for _, row := range align(la, lb) {
		mark := " "
		switch {
		case row.left != nil && row.right != nil && *row.left != *row.right:
			mark = "|"
		case row.left == nil:
			mark = ">"
		case row.right == nil:
			mark = "<"
		}
		left, right := "", ""
		if row.left != nil {
			left = *row.left
		}
		if row.right != nil {
			right = *row.right
		}
		fmt.Fprintf(&sb, "%s %-*s %s %s\n", mark, width, clip(left, width), mark, clip(right, 200))
	}
	return sb.String()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

type row struct{ left, right *string }

// align pairs the lines of a and b: common lines side by side, and runs of
// differing lines paired up in order.
func align(a, b []string) []row {
	// lcs[i][j] is the length of the longest common subsequence of a[i:]
	// and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var rows []row
	var onlyA, onlyB []*string
	flush := func() {
		for k := 0; k < max(len(onlyA), len(onlyB)); k++ {
			var r row
			if k < len(onlyA) {
				r.left = onlyA[k]
			}
			if k < len(onlyB) {
				r.right = onlyB[k]
			}
			rows = append(rows, r)
		}
		onlyA, onlyB = nil, nil
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			flush()
			rows = append(rows, row{&a[i], &b[j]})
			i++
			j++
		case j >= len(b) || (i < len(a) && lcs[i+1][j] >= lcs[i][j+1]):
			onlyA = append(onlyA, &a[i])
			i++
		default:
			onlyB = append(onlyB, &b[j])
			j++
		}
	}
	flush()
	return rows
}

// Row is one probe of a table: the same probe through two proxies.
type Row struct {
	Probe       string
	Left, Right Result
}

// WriteTable prints one line per probe (match or differ, with the status
// lines) and then the side-by-side diff of every probe that differs. It
// returns how many probes matched and how many ran.
func WriteTable(w io.Writer, leftName, rightName string, rows []Row) (matched, ran int) {
	fmt.Fprintf(w, "%-32s %-8s %-34s %s\n", "probe", "result", leftName, rightName)
	for _, r := range rows {
		verdict := "differ"
		switch {
		case r.Left.Skipped != "" || r.Right.Skipped != "":
			verdict = "skipped"
		case Equal(r.Left, r.Right):
			verdict = "match"
			matched++
		}
		if verdict != "skipped" {
			ran++
		}
		fmt.Fprintf(w, "%-32s %-8s %-34s %s\n", r.Probe, verdict, clip(summary(r.Left), 34), clip(summary(r.Right), 60))
	}
	fmt.Fprintf(w, "\n%d of %d probes match\n", matched, ran)
	for _, r := range rows {
		if r.Left.Skipped == "" && r.Right.Skipped == "" && !Equal(r.Left, r.Right) {
			fmt.Fprintf(w, "\n== %s\n%s", r.Probe, Diff(leftName, r.Left, rightName, r.Right))
		}
	}
	return matched, ran
}

func summary(r Result) string {
	switch {
	case r.Skipped != "":
		return "skipped: " + r.Skipped
	case r.Status == "":
		return "no answer, " + r.Conn
	case r.Tunnel != nil:
		return r.Status + " / " + r.Tunnel.Status
	}
	return r.Status
}
