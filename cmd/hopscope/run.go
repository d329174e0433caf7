package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// run is the whole program; main only adds signals and the exit status, so
// tests can run the command in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "hopscope", version())
			return nil
		case "serve":
			args = args[1:]
		case "help":
			args = []string{"--help"}
		case "ca":
			return runCA(args[1:], stdout)
		}
	}
	cfg, err := parseConfig(args, stdout)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// serve runs the proxy until ctx is done, then shuts it down gracefully.
func serve(ctx context.Context, cfg config, stderr io.Writer) error {
	opts, err := proxyOptions(cfg)
	if err != nil {
		return err
	}
	if err := checkOpenProxy(cfg); err != nil {
		return err
	}
	logger, closeLog, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	if opts.Policy.Bump.Enabled() {
		if err := loadCA(cfg, opts, logger); err != nil {
			return err
		}
	}
	srv, err := proxy.New(opts, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	logger.Info().Str("event", "shutdown").Str("timeout", cfg.ShutdownTimeout.String()).Msg("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", cfg.Listen, err)
	}
	return nil
}

// proxyOptions turns the settings into proxy.Options, reading the files
// they name.
func proxyOptions(cfg config) (*proxy.Options, error) {
	pol := policy.New()
	ports, err := policy.ParsePortSet(cfg.ConnectPorts)
	if err != nil {
		return nil, usageError{"--connect-ports: " + err.Error()}
	}
	pol.ConnectPorts = ports
	for _, s := range cfg.AllowHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, usageError{"--allow-host: " + err.Error()}
		}
		pol.Allow = append(pol.Allow, p)
	}
	for _, s := range cfg.DenyHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, usageError{"--deny-host: " + err.Error()}
		}
		pol.Deny = append(pol.Deny, p)
	}
	for _, s := range cfg.AllowClient {
		p, err := policy.ParseClientPrefix(s)
		if err != nil {
			return nil, usageError{"--allow-client: " + err.Error()}
		}
		pol.Clients = append(pol.Clients, p)
	}
	creds := proxy.NewCredentials()
	for _, pair := range cfg.Auth {
		if err := creds.AddPair(pair); err != nil {
			return nil, usageError{"--auth: " + err.Error()}
		}
	}
	if cfg.Htpasswd != "" {
		data, err := os.ReadFile(cfg.Htpasswd)
		if err != nil {
			return nil, fmt.Errorf("--htpasswd: %w", err)
		}
		if err := creds.AddHtpasswd(data, cfg.Htpasswd); err != nil {
			return nil, fmt.Errorf("--htpasswd: %w", err)
		}
	}
	var extraRoots []byte
	if cfg.UpstreamCA != "" {
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		extraRoots = pem
	}
	tlsConf, err := mitm.UpstreamConfig(extraRoots, cfg.InsecureUpstream)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca %s: %w", cfg.UpstreamCA, err)
	}
	pol.Bump.All = cfg.MITM
	for _, s := range cfg.MITMHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, usageError{"--mitm-host: " + err.Error()}
		}
		pol.Bump.Hosts = append(pol.Bump.Hosts, p)
	}
	for _, s := range cfg.NoMITMHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, usageError{"--no-mitm-host: " + err.Error()}
		}
		pol.Bump.Never = append(pol.Bump.Never, p)
	}
	wsOpts, err := webSocketOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts := &proxy.Options{
		WebSocket:             wsOpts,
		Policy:                pol,
		Credentials:           creds,
		Pseudonym:             cfg.Pseudonym,
		UpstreamTLS:           tlsConf,
		DialTimeout:           cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ReadHeaderTimeout:     cfg.ReadHeaderTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		MaxHeaderBytes:        cfg.MaxHeaderBytes,
		CAHost:                cfg.CAHost,
	}
	if strings.ContainsAny(cfg.Pseudonym, " ,;\"\t") || cfg.Pseudonym == "" {
		return nil, usageError{fmt.Sprintf("--pseudonym %q: must be one token without spaces, commas or quotes", cfg.Pseudonym)}
	}
	if cfg.UpstreamProxy != "" {
		u, err := url.Parse(cfg.UpstreamProxy)
		if err != nil || u.Host == "" {
			return nil, usageError{fmt.Sprintf("--upstream-proxy %q: give a URL like http://host:3128", cfg.UpstreamProxy)}
		}
		opts.UpstreamProxy = u
	}
	return opts, nil
}

// checkOpenProxy refuses to listen on a non-loopback address with neither
// authentication nor a client allowlist: that is an open proxy anyone on the
// network (or the internet) can relay through.
func checkOpenProxy(cfg config) error {
	if cfg.AllowOpen || len(cfg.Auth) > 0 || cfg.Htpasswd != "" || len(cfg.AllowClient) > 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return usageError{fmt.Sprintf("--listen %q: not host:port: %v", cfg.Listen, err)}
	}
	if host == "localhost" {
		return nil
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Unmap().IsLoopback() {
		return nil
	}
	return usageError{fmt.Sprintf("refusing to listen on %s: it is not a loopback address, and with neither --auth, --htpasswd nor --allow-client anyone who can reach it could use hopscope as an open proxy. "+
		"Add credentials or a client range, or pass --allow-open if that is what you want.", cfg.Listen)}
}

// newLogger builds the event logger: JSON lines, or zerolog's console
// format for a person at a terminal.
func newLogger(cfg config, stderr io.Writer) (zerolog.Logger, func(), error) {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil || cfg.LogLevel == "" {
		return zerolog.Nop(), nil, usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", cfg.LogLevel)}
	}
	out, closeOut := stderr, func() {}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return zerolog.Nop(), nil, fmt.Errorf("--log-file: %w", err)
		}
		out, closeOut = f, func() { _ = f.Close() }
	}
	console := false
	switch cfg.LogFormat {
	case "json":
	case "console":
		console = true
	case "auto":
		if f, ok := out.(*os.File); ok {
			console = isatty.IsTerminal(f.Fd())
		}
	default:
		closeOut()
		return zerolog.Nop(), nil, usageError{fmt.Sprintf("--log-format %q: use auto, json or console", cfg.LogFormat)}
	}
	if console {
		out = zerolog.ConsoleWriter{
			Out:           out,
			TimeFormat:    "15:04:05.000",
			PartsOrder:    []string{zerolog.TimestampFieldName, zerolog.LevelFieldName, "event", zerolog.MessageFieldName},
			FieldsExclude: []string{"event"},
		}
	}
	logger := zerolog.New(out).Level(level).With().Timestamp().Logger()
	return logger, closeOut, nil
}
