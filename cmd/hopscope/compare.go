package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/compare"
	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/proxy"
)

// runCompare is `hopscope compare`: the same raw probes through a user's
// own proxy and through hopscope with a profile, side by side.
func runCompare(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hopscope compare", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	realAddr := fs.String("real", "", "host:port of the proxy to compare with (required)")
	profile := fs.String("profile", "", "hopscope profile(s) to compare, comma-separated: "+config.ProfileNames)
	hosts := fs.String("host", "", "comma-separated names the real proxy uses for itself (its Via host), shown as <host>; this machine's name always is")
	auth := fs.String("auth", "", "USER:PASS the real proxy requires: adds the authentication probes, and hopscope requires the same")
	ignoreVersions := fs.Bool("ignore-versions", false, "compare squid/X and tinyproxy/X without their versions")
	keepOrder := fs.Bool("keep-order", false, "compare the order of the answer's header fields too (hopscope writes them sorted by name)")
	only := fs.String("probes", "", "comma-separated probes to run (default all)")
	unresolvable := fs.String("unresolvable", "", "host `name` the real proxy is probed with where a name must not resolve (default: one with a label too long for DNS, refused before any query; squid asks its name server even so, and needs a plain name such as no-such-host.invalid)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintln(stdout, "Usage: hopscope compare --real HOST:PORT --profile NAME [--host NAME] [--auth USER:PASS] [--ignore-versions] [--keep-order] [--probes LIST]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return config.UsageError{Msg: "hopscope compare: " + err.Error()}
	}
	if *realAddr == "" {
		return config.UsageError{Msg: "hopscope compare: --real HOST:PORT is required: the proxy to compare hopscope with"}
	}
	probe, err := net.DialTimeout("tcp", *realAddr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("hopscope compare: cannot reach the proxy to compare with: %w", err)
	}
	probe.Close()
	probes := compare.Probes()
	serveArgs := []string{"--listen", "127.0.0.1:0"}
	if *profile != "" {
		serveArgs = append(serveArgs, "--profile", *profile)
	}
	if *auth != "" {
		user, pass, ok := strings.Cut(*auth, ":")
		if !ok {
			return config.UsageError{Msg: "hopscope compare: --auth wants USER:PASS"}
		}
		probes = append(probes, compare.AuthProbes(user, pass)...)
		serveArgs = append(serveArgs, "--profile", "auth", "--auth", *auth)
	}
	if *only != "" {
		probes = pick(probes, strings.Split(*only, ","))
		if len(probes) == 0 {
			return config.UsageError{Msg: "hopscope compare: --probes names no known probe"}
		}
	}
	cfg, err := config.Parse(serveArgs, io.Discard)
	if err != nil {
		return err
	}
	addr, stop, err := startInProcess(cfg)
	if err != nil {
		return err
	}
	defer stop()

	n := compare.Normaliser{IgnoreVersions: *ignoreVersions, SortAnswerFields: !*keepOrder}
	if name, err := os.Hostname(); err == nil {
		n.Hosts = append(n.Hosts, name)
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			n.Hosts = append(n.Hosts, h)
		}
	}
	realN := n
	realN.Unresolvable = *unresolvable
	var rows []compare.Row
	for _, p := range probes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rows = append(rows, compare.Row{Probe: p.Name, Left: compare.Run(ctx, *realAddr, p, realN), Right: compare.Run(ctx, addr, p, n)})
	}
	name := "hopscope"
	if *profile != "" {
		name += " --profile " + *profile
	}
	matched, ran := compare.WriteTable(stdout, *realAddr, name, rows)
	if matched < ran {
		return fmt.Errorf("%d of %d probes differ", ran-matched, ran)
	}
	return nil
}

func pick(probes []compare.Probe, names []string) []compare.Probe {
	var out []compare.Probe
	for _, p := range probes {
		for _, name := range names {
			if strings.TrimSpace(name) == p.Name {
				out = append(out, p)
			}
		}
	}
	return out
}

// startInProcess runs hopscope with cfg on a loopback port, logging
// nothing, until stop.
func startInProcess(cfg config.Config) (string, func(), error) {
	opts, _, err := cfg.ProxyOptions()
	if err != nil {
		return "", nil, err
	}
	srv, err := proxy.New(opts, zerolog.Nop())
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "hopscope compare: serving:", err)
		}
	}
	return ln.Addr().String(), stop, nil
}
