package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/proxy"
	"github.com/hopscope/hopscope/store"
	"github.com/hopscope/hopscope/ui"
)

// webUI is the web UI (--ui): served on its own listener and, to local
// clients, at the proxy's magic host.
type webUI struct {
	srv  *ui.Server
	set  config.UISettings
	http *http.Server
	done chan error
}

// newWebUI makes the UI over the flow store and puts it at the proxy's
// magic host; nil without --ui.
func newWebUI(cfg config.Config, st *store.Store, opts *proxy.Options, log zerolog.Logger) (*webUI, error) {
	set, err := cfg.UISettings()
	if err != nil || set.Addr == "" {
		return nil, err
	}
	hosts := []string{set.Host}
	if host, _, err := net.SplitHostPort(set.Addr); err == nil && net.ParseIP(host) == nil && host != "" {
		hosts = append(hosts, host)
	}
	srv, err := ui.New(ui.Options{
		Source:    ui.StoreSource(st),
		HAR:       ui.StoreHAR(st, version()),
		Hosts:     hosts,
		AnyIPHost: !set.Loopback, // reached by the machine's address; --ui-auth guards it
		User:      set.User,
		Password:  set.Password,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	opts.UI = srv
	return &webUI{srv: srv, set: set}, nil
}

// start listens on --ui and says where the UI is, with its token: on the
// event log and, when that goes to a file, on stderr too.
func (w *webUI) start(log zerolog.Logger, logToFile bool, stderr io.Writer) error {
	ln, err := net.Listen("tcp", w.set.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s (--ui): %w", w.set.Addr, err)
	}
	w.http = &http.Server{Handler: w.srv, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	w.done = make(chan error, 1)
	go func() { w.done <- w.http.Serve(ln) }()
	addr := ln.Addr().(*net.TCPAddr)
	host := w.set.Addr
	if h, _, err := net.SplitHostPort(w.set.Addr); err == nil {
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = "127.0.0.1"
		}
		host = net.JoinHostPort(h, fmt.Sprint(addr.Port))
	}
	direct := w.srv.URL("http://" + host)
	viaProxy := w.srv.URL("http://" + w.set.Host)
	log.Info().Str("event", "ui").Str("url", direct).Str("proxy_url", viaProxy).
		Msg("web UI at " + direct + " (through the proxy: " + viaProxy + "); the token in the link is a secret")
	if logToFile {
		fmt.Fprintf(stderr, "hopscope web UI: %s\n  (through the proxy: %s)\n", direct, viaProxy)
	}
	return nil
}

// stop ends the UI's live streams (also those riding the proxy, which
// would hold up its shutdown) and its listener.
func (w *webUI) stop(ctx context.Context) error {
	w.srv.Close()
	if w.http == nil {
		return nil
	}
	if err := w.http.Shutdown(ctx); err != nil {
		_ = w.http.Close()
	}
	if err := <-w.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the web UI on %s: %w", w.set.Addr, err)
	}
	return nil
}
