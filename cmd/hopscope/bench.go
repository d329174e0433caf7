package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hopscope/hopscope/bench"
	"github.com/hopscope/hopscope/config"
)

// runBench is `hopscope bench`: the load table, direct and through a proxy.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hopscope bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	proxyAddr := fs.String("proxy", "", "host:port of a proxy to measure (squid, mitmproxy, another hopscope); default: hopscope in-process")
	proxyCA := fs.String("proxy-ca", "", "PEM file of the external proxy's CA, for the bumped HTTPS cases")
	rounds := fs.Int("rounds", 3, "rounds per case and side; the median is reported")
	roundTime := fs.Duration("round-time", 0, "time per round (default 1.5s)")
	cases := fs.String("cases", "", "comma-separated cases to run (default all): "+strings.Join(bench.Cases(), ", "))
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintln(stdout, "Usage: hopscope bench [--proxy HOST:PORT] [--proxy-ca FILE] [--rounds N] [--round-time D] [--cases LIST]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return config.UsageError{Msg: "hopscope bench: " + err.Error()}
	}
	opts := bench.Options{Proxy: *proxyAddr, Rounds: *rounds, RoundTime: *roundTime, Progress: stderr}
	if *cases != "" {
		for _, c := range strings.Split(*cases, ",") {
			c = strings.TrimSpace(c)
			if !contains(bench.Cases(), c) {
				return config.UsageError{Msg: fmt.Sprintf("hopscope bench: unknown case %q; use %s", c, strings.Join(bench.Cases(), ", "))}
			}
			opts.Cases = append(opts.Cases, c)
		}
	}
	if *proxyCA != "" {
		pem, err := os.ReadFile(*proxyCA)
		if err != nil {
			return fmt.Errorf("--proxy-ca: %w", err)
		}
		opts.ProxyCA = pem
	}
	target := "hopscope in-process"
	if opts.Proxy != "" {
		target = opts.Proxy
	}
	fmt.Fprintf(stderr, "measuring %s against direct connections on loopback (%d rounds per side)\n", target, opts.Rounds)
	results, err := bench.Run(ctx, opts)
	bench.Format(stdout, results)
	return err
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
