package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/hopscope/hopscope/bench"
	"github.com/hopscope/hopscope/config"
)

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const benchUsage = "Usage: hopscope bench [--compare [NAME=]HOST:PORT]... [--compare-ca NAME=FILE]... [--builtin LIST] [--rounds N] [--round-time D] [--idle-conns N] [--idle-settle D] [--cases LIST]"

// runBench is `hopscope bench`: one table of every case, direct and through
// each proxy, in the same rounds.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hopscope bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var compare, compareCA listFlag
	fs.Var(&compare, "compare", "repeatable; another proxy to measure in the same rounds, as NAME=HOST:PORT (or HOST:PORT)")
	fs.Var(&compareCA, "compare-ca", "repeatable; NAME=FILE: the PEM CA of a compared proxy that bumps TLS")
	builtin := fs.String("builtin", strings.Join(bench.Builtins, ","), "hopscope processes to start and measure: hopscope (inspecting), hopscope-mitm (--mitm), or none")
	rounds := fs.Int("rounds", 3, "rounds per case and side; the median is reported")
	roundTime := fs.Duration("round-time", 0, "time per round of a rate case (default 1s)")
	idleConns := fs.Int("idle-conns", 500, "sessions the idle-memory cases hold open")
	idleSettle := fs.Duration("idle-settle", 0, "how long those sessions sit idle before the proxy's RSS is read (default 3s)")
	cases := fs.String("cases", "", "comma-separated cases to run (default all): "+strings.Join(bench.Cases(), ", "))
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintln(stdout, benchUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return config.UsageError{Msg: "hopscope bench: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return config.UsageError{Msg: fmt.Sprintf("hopscope bench: unexpected argument %q; %s", fs.Arg(0), benchUsage)}
	}
	opts := bench.Options{Rounds: *rounds, RoundTime: *roundTime, IdleConns: *idleConns, IdleSettle: *idleSettle, Progress: stderr}
	if *cases != "" {
		for _, c := range strings.Split(*cases, ",") {
			c = strings.TrimSpace(c)
			if !slices.Contains(bench.Cases(), c) {
				return config.UsageError{Msg: fmt.Sprintf("hopscope bench: unknown case %q; use %s", c, strings.Join(bench.Cases(), ", "))}
			}
			opts.Cases = append(opts.Cases, c)
		}
	}
	if *builtin != "none" && *builtin != "" {
		for _, b := range strings.Split(*builtin, ",") {
			b = strings.TrimSpace(b)
			if !slices.Contains(bench.Builtins, b) {
				return config.UsageError{Msg: fmt.Sprintf("hopscope bench: --builtin %q: use %s or none", b, strings.Join(bench.Builtins, ", "))}
			}
			opts.Builtin = append(opts.Builtin, b)
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the hopscope binary to start: %w", err)
		}
		opts.Launch = func(args []string) *exec.Cmd {
			cmd := exec.Command(exe, args...)
			// A test binary runs main() with this set; hopscope ignores it.
			cmd.Env = append(os.Environ(), "HOPSCOPE_RUN_MAIN=1")
			return cmd
		}
	}
	cas := map[string][]byte{}
	for _, v := range compareCA {
		name, file, ok := strings.Cut(v, "=")
		if !ok {
			return config.UsageError{Msg: fmt.Sprintf("hopscope bench: --compare-ca %q: use NAME=FILE", v)}
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--compare-ca %s: %w", name, err)
		}
		cas[name] = pem
	}
	for _, v := range compare {
		name, addr, ok := strings.Cut(v, "=")
		if !ok {
			name, addr = v, v
		}
		if addr == "" || slices.ContainsFunc(opts.Compare, func(t bench.Target) bool { return t.Name == name }) || slices.Contains(opts.Builtin, name) {
			return config.UsageError{Msg: fmt.Sprintf("hopscope bench: --compare %q: use a NAME=HOST:PORT whose name is not used twice", v)}
		}
		opts.Compare = append(opts.Compare, bench.Target{Name: name, Addr: addr, CA: cas[name]})
		delete(cas, name)
	}
	for name := range cas {
		return config.UsageError{Msg: fmt.Sprintf("hopscope bench: --compare-ca %s names no --compare target", name)}
	}
	if opts.Launch == nil && len(opts.Compare) == 0 {
		return config.UsageError{Msg: "hopscope bench: nothing to measure: --builtin none and no --compare"}
	}
	fmt.Fprintf(stderr, "measuring against direct connections on loopback, %s per side; every proxy runs as its own process\n", countOf(opts.Rounds, "round", "rounds"))
	rep, err := bench.Run(ctx, opts)
	if rep != nil {
		bench.Format(stdout, rep)
	}
	return err
}
