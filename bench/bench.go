// Package bench measures proxies against the same work done directly, on
// loopback, in one sitting: lockstep WebSocket echo on the three ways a
// WebSocket crosses a proxy, small GETs, bulk CONNECT downloads, bumped
// HTTPS, and the resident memory idle sessions cost the proxy process.
//
// Every proxy under test runs as a process of its own (hopscope is started
// from its own binary; others are given by address), so its CPU and RSS
// are its own and the load client is as independent of it as it is of the
// origins. Each round measures direct and every proxy once, so the
// ratio proxy/direct of one run compares proxies under the same machine
// load.
package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options configure a run.
type Options struct {
	// Launch returns the command that runs hopscope with the given
	// arguments (such as "serve --listen ..."), for the built-in targets;
	// nil: only the Compare targets are measured.
	Launch func(args []string) *exec.Cmd
	// Builtin selects the hopscope processes to start, by name:
	// "hopscope" (default flags, inspecting) and "hopscope-mitm" (--mitm).
	// Empty: both, when Launch is set.
	Builtin []string
	// Compare are other running proxies, measured in the same rounds.
	Compare []Target
	// Rounds per rate case and side; the median is reported. Default 3.
	// Memory cases run one round.
	Rounds int
	// RoundTime bounds each round of a rate case. Default 1s.
	RoundTime time.Duration
	// IdleConns is how many sessions the memory cases hold open. Default 500.
	IdleConns int
	// IdleSettle is how long the sessions sit idle before the proxy's
	// RSS is read. Default 3s.
	IdleSettle time.Duration
	// Cases selects cases by name; empty: all.
	Cases []string
	// Progress receives a line per case and target; nil: none.
	Progress io.Writer
}

// Target is a proxy to measure.
type Target struct {
	// Name heads the target's column.
	Name string
	// Addr is the proxy's host:port.
	Addr string
	// CA is the PEM CA of a proxy that bumps TLS; clients trust it beside
	// the origins' own root, so a blind proxy and a bumping one both work.
	CA []byte
	// PID is the proxy's process, for the memory cases; 0: found by the
	// socket listening on Addr (Linux, same machine).
	PID int
}

// Builtins are the hopscope processes a run starts when Options.Launch is
// set and Options.Builtin is empty.
var Builtins = []string{"hopscope", "hopscope-mitm"}

// Report is the table of a run.
type Report struct {
	Targets []string
	Rows    []Row
}

// Row is one case: the direct figure and one cell per target.
type Row struct {
	Case, Unit string
	Memory     bool
	Direct     Cell
	Cells      []Cell // in Report.Targets order
}

// Cell is one side's figures for a case.
type Cell struct {
	// Value is the median rate over rounds, or for memory cases the
	// median KiB of RSS per idle session.
	Value float64
	// Ratio is Value / direct Value for rate cases (1.00 = free).
	Ratio float64
	// P50, P99 are latencies of single operations, where a case has them.
	P50, P99 time.Duration
	// CPU is the proxy process's CPU time (user and system) per
	// operation, which the machine's other load moves far less than
	// rates; 0 where unknown (direct, memory cases, no /proc).
	CPU time.Duration
	// Note says why a cell is empty.
	Note string
}

// caseDef is one benchmark case.
type caseDef struct {
	name string
	unit string
	// run does one round, through t (nil: direct), and returns the rate
	// (or KiB per session) and the latencies of single operations.
	run    func(ctx context.Context, e *env, t *target) (float64, []time.Duration, error)
	memory bool
}

// Cases lists the case names, in table order.
func Cases() []string {
	var names []string
	for _, c := range allCases() {
		names = append(names, c.name)
	}
	return names
}

// Run measures every selected case on every target and returns the table.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	if opts.RoundTime <= 0 {
		opts.RoundTime = time.Second
	}
	if opts.IdleConns <= 0 {
		opts.IdleConns = 500
	}
	if opts.IdleSettle <= 0 {
		opts.IdleSettle = 3 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Launch != nil && len(opts.Builtin) == 0 {
		opts.Builtin = Builtins
	}
	e, err := newEnv(opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if err := e.startTargets(); err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, t := range e.targets {
		rep.Targets = append(rep.Targets, t.Name)
	}
	for _, c := range allCases() {
		if len(opts.Cases) > 0 && !slices.Contains(opts.Cases, c.name) {
			continue
		}
		rep.Rows = append(rep.Rows, e.measure(ctx, c))
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

// measure runs rounds of a case: every side once per round, so that each
// round sees every side under the same load.
func (e *env) measure(ctx context.Context, c caseDef) Row {
	sides := append([]*target{nil}, e.targets...)
	values := make([][]float64, len(sides))
	lats := make([][]time.Duration, len(sides))
	notes := make([]string, len(sides))
	cpu := make([]time.Duration, len(sides))
	ops := make([]int, len(sides))
	rounds := e.opts.Rounds
	if c.memory {
		// One round: holding hundreds of sessions is slow through a
		// proxy that mints an RSA leaf per connection (goproxy: ~86 ms).
		rounds = 1
	}
	for round := range rounds {
		// Each round starts with a different side, so that none always
		// meets what the previous case or round left behind (a
		// collection, sockets closing).
		for k := range sides {
			i := (k + round) % len(sides)
			t := sides[i]
			if notes[i] != "" || (c.memory && t == nil) || ctx.Err() != nil {
				continue
			}
			if c.memory && t.restart != nil {
				// A fresh process, so that memory freed by earlier
				// cases does not hide what idle sessions cost.
				if err := t.restart(); err != nil {
					notes[i] = "failed: " + err.Error()
					continue
				}
			}
			cpu0 := e.cpuOf(t)
			v, lat, err := c.run(ctx, e, t)
			if err != nil {
				notes[i] = "failed: " + firstLine(err.Error())
				continue
			}
			if cpu1 := e.cpuOf(t); cpu0 >= 0 && cpu1 >= 0 && len(lat) > 0 {
				cpu[i] += cpu1 - cpu0
				ops[i] += len(lat)
			}
			values[i] = append(values[i], v)
			lats[i] = append(lats[i], lat...)
		}
	}
	row := Row{Case: c.name, Unit: c.unit, Memory: c.memory}
	cells := make([]Cell, len(sides))
	for i := range sides {
		cell := Cell{Value: median(values[i]), P50: percentile(lats[i], 50), P99: percentile(lats[i], 99), Note: notes[i]}
		if ops[i] > 0 {
			cell.CPU = cpu[i] / time.Duration(ops[i])
		}
		if len(values[i]) == 0 && cell.Note == "" {
			cell.Note = "-"
		}
		cells[i] = cell
	}
	for i := 1; i < len(cells); i++ {
		if !c.memory && cells[0].Value > 0 && cells[i].Note == "" {
			cells[i].Ratio = cells[i].Value / cells[0].Value
		}
	}
	row.Direct, row.Cells = cells[0], cells[1:]
	fmt.Fprintf(e.opts.Progress, "%s\n", e.progressLine(row))
	return row
}

func (e *env) progressLine(r Row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s", r.Case)
	if !r.Memory {
		fmt.Fprintf(&b, " direct %.1f %s", r.Direct.Value, r.Unit)
	}
	for i, c := range r.Cells {
		fmt.Fprintf(&b, ", %s %s", e.targets[i].Name, cellText(r, c))
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// cellText is a cell as the ratio table shows it: the ratio for rates,
// KiB per session for memory, or the note.
func cellText(r Row, c Cell) string {
	switch {
	case c.Note != "":
		return c.Note
	case r.Memory:
		return fmt.Sprintf("%.1f", c.Value)
	default:
		return fmt.Sprintf("%.2f", c.Ratio)
	}
}

// Format writes the report as two tables: ratios (and memory), then the
// latency percentiles of single operations.
func Format(w io.Writer, rep *Report) {
	head := append([]string{"case", "unit", "direct"}, rep.Targets...)
	var rows [][]string
	for _, r := range rep.Rows {
		direct := fmt.Sprintf("%.1f", r.Direct.Value)
		if r.Memory {
			direct = "-"
		} else if r.Direct.Note != "" {
			direct = r.Direct.Note
		}
		row := []string{r.Case, r.Unit, direct}
		for _, c := range r.Cells {
			row = append(row, cellText(r, c))
		}
		rows = append(rows, row)
	}
	writeTable(w, head, rows)
	fmt.Fprintln(w, "rates: proxy/direct in the same rounds (1.00 = no cost, higher is better);")
	fmt.Fprintln(w, "memory (KiB/conn): the proxy process's RSS per idle session, its RSS before them subtracted (lower is better).")
	fmt.Fprintln(w)

	head = append([]string{"p50/p99 per operation", "direct"}, rep.Targets...)
	rows = nil
	for _, r := range rep.Rows {
		if r.Memory {
			continue
		}
		row := []string{r.Case, latText(r.Direct)}
		for _, c := range r.Cells {
			row = append(row, latText(c))
		}
		rows = append(rows, row)
	}
	writeTable(w, head, rows)
	fmt.Fprintln(w)

	head = append([]string{"proxy CPU per operation"}, rep.Targets...)
	rows = nil
	for _, r := range rep.Rows {
		if r.Memory {
			continue
		}
		row := []string{r.Case}
		for _, c := range r.Cells {
			row = append(row, cpuText(c.CPU))
		}
		rows = append(rows, row)
	}
	writeTable(w, head, rows)
	fmt.Fprintln(w, "CPU: user+system time of the proxy process per operation (a message echoed, a request, a download); lower is better.")
}

func cpuText(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	default:
		return dur(d)
	}
}

func latText(c Cell) string {
	if c.P50 == 0 {
		return "-"
	}
	return dur(c.P50) + " / " + dur(c.P99)
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

func writeTable(w io.Writer, head []string, rows [][]string) {
	widths := make([]int, len(head))
	for _, r := range append([][]string{head}, rows...) {
		for i, s := range r {
			widths[i] = max(widths[i], len([]rune(s)))
		}
	}
	for _, r := range append([][]string{head}, rows...) {
		for i, s := range r {
			pad := widths[i] - len([]rune(s))
			if i == 0 {
				fmt.Fprint(w, s, strings.Repeat(" ", pad))
			} else {
				fmt.Fprint(w, "  ", strings.Repeat(" ", pad), s)
			}
		}
		fmt.Fprintln(w)
	}
}

// target is a Target as a run uses it.
type target struct {
	Target
	roots *x509.CertPool // the origins' root and the proxy's CA
	// restart starts a fresh process, for hopscope processes the run owns.
	restart func() error
}

var errNoProcess = errors.New("no process found listening on the proxy's address")
