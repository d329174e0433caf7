package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/eventlog"
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
		case "bench":
			return runBench(ctx, args[1:], stdout, stderr)
		case "compare":
			return runCompare(ctx, args[1:], stdout)
		case "replay":
			return runReplay(ctx, args[1:], stdout, stderr)
		case "record":
			return runRecord(ctx, args[1:], stdout, stderr)
		}
	}
	cfg, err := config.Parse(args, stdout)
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
func serve(ctx context.Context, cfg config.Config, stderr io.Writer) error {
	if err := cfg.CheckOpenProxy(); err != nil {
		return err
	}
	opts, ca, err := cfg.ProxyOptions()
	if err != nil {
		return err
	}
	logOpts, err := cfg.EventLogOptions()
	if err != nil {
		return err
	}
	if err := checkStoreSettings(cfg); err != nil {
		return err
	}
	flows, loaded, err := newFlowStore(cfg)
	if err != nil {
		return err
	}
	logger, batch, closeLog, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	if ca.Created {
		logger.Warn().Str("event", "ca_created").Str("dir", ca.Dir).Str("fingerprint", ca.Fingerprint).
			Msg("created a new local CA; trust it with `hopscope ca install` or fetch http://" + cfg.CAHost + "/ through the proxy")
	}
	if _, err := newInterceptor(cfg, opts, logger); err != nil {
		return err
	}
	web, err := newWebUI(cfg, flows, opts, logger)
	if err != nil {
		return err
	}
	srv, err := proxy.New(opts, logger)
	if err != nil {
		return err
	}
	// The event log is an observer of the proxy's flows; Shutdown closes
	// the bus after the last exchange, and the log has written it all when
	// Shutdown returns.
	logOpts.Batch = batch
	eventlog.Subscribe(srv.Flows(), logger, logOpts)
	if web != nil {
		web.observe(srv.Flows())
	}
	if flows != nil {
		flows.Attach(srv.Flows())
	}
	for i, s := range loaded {
		logger.Info().Str("event", "har_import").Str("file", cfg.HARImport[i]).Int("entries", s.Entries).
			Int("websockets", s.WebSockets).Int("messages", s.Messages).Int("tunnels", s.Tunnels).Msg("loaded a HAR into the flow store")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	var socksLn net.Listener
	if cfg.SOCKS5 != "" {
		if socksLn, err = net.Listen("tcp", cfg.SOCKS5); err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s (--socks5): %w", cfg.SOCKS5, err)
		}
	}
	if web != nil {
		if err := web.start(logger, cfg.LogFile != "", stderr); err != nil {
			ln.Close()
			if socksLn != nil {
				socksLn.Close()
			}
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var socksServed chan error // nil, so never ready, without --socks5
	if socksLn != nil {
		socksServed = make(chan error, 1)
		go func() { socksServed <- srv.ServeSOCKS(socksLn) }()
	}
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", cfg.Listen, err)
	case err := <-socksServed:
		return fmt.Errorf("serving SOCKS5 on %s: %w", cfg.SOCKS5, err)
	case <-ctx.Done():
	}
	logger.Info().Str("event", "shutdown").Str("timeout", cfg.ShutdownTimeout.String()).Msg("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var uiErr error
	if web != nil {
		uiErr = web.stop(shutdownCtx)
	}
	shutdownErr := errors.Join(srv.Shutdown(shutdownCtx), uiErr)
	if flows != nil && cfg.HAR != "" {
		// Shutdown has closed the bus: the store holds the last flows.
		if err := writeHARFile(cfg.HAR, flows); err != nil {
			return errors.Join(shutdownErr, err)
		}
		s := flows.Stats()
		logger.Info().Str("event", "har").Str("file", cfg.HAR).Int("flows", s.Flows).Int("messages", s.Messages).
			Uint64("evicted_flows", s.EvictedFlows).Uint64("evicted_messages", s.EvictedMessages).Msg("wrote the flows as HAR")
	}
	if shutdownErr != nil {
		return shutdownErr
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", cfg.Listen, err)
	}
	if socksLn != nil {
		if err := <-socksServed; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving SOCKS5 on %s: %w", cfg.SOCKS5, err)
		}
	}
	return nil
}

// newLogger builds the event logger: JSON lines, or zerolog's console
// format for a person at a terminal.
func newLogger(cfg config.Config, stderr io.Writer) (zerolog.Logger, *batchWriter, func(), error) {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil || cfg.LogLevel == "" {
		return zerolog.Nop(), nil, nil, config.UsageError{Msg: fmt.Sprintf("--log-level %q: use debug, info, warn or error", cfg.LogLevel)}
	}
	out, closeOut := stderr, func() {}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return zerolog.Nop(), nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		out, closeOut = f, func() { _ = f.Close() }
	}
	terminal := false
	if f, ok := out.(*os.File); ok {
		terminal = isatty.IsTerminal(f.Fd())
	}
	console := false
	switch cfg.LogFormat {
	case "json":
	case "console":
		console = true
	case "auto":
		console = terminal
	default:
		closeOut()
		return zerolog.Nop(), nil, nil, config.UsageError{Msg: fmt.Sprintf("--log-format %q: use auto, json or console", cfg.LogFormat)}
	}
	batch := newBatchWriter(out)
	out = batch
	if console {
		out = zerolog.ConsoleWriter{
			Out:           out,
			NoColor:       !terminal, // no escape codes in files and pipes
			TimeFormat:    "15:04:05.000",
			PartsOrder:    []string{zerolog.TimestampFieldName, zerolog.LevelFieldName, "event", zerolog.MessageFieldName},
			FieldsExclude: []string{"event"},
		}
	}
	logger := zerolog.New(out).Level(level).With().Timestamp().Logger()
	return logger, batch, closeOut, nil
}
