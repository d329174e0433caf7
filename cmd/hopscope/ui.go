package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/metrics"
	"github.com/hopscope/hopscope/proxy"
	"github.com/hopscope/hopscope/store"
	"github.com/hopscope/hopscope/ui"
)

// webUI is the web UI (--ui): served on its own listener and, to local
// clients, at the proxy's magic host.
type webUI struct {
	srv *ui.Server
	set config.UISettings
	// metrics are served at /metrics on the UI's listener.
	metrics *metrics.Metrics
	http    *http.Server
	done    chan error
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
	// The interception engine (--intercept), when it runs, has its API
	// in the UI.
	var interceptAPI http.Handler
	if api, ok := opts.Interceptor.(interface{ Handler() http.Handler }); ok {
		interceptAPI = api.Handler()
	}
	srv, err := ui.New(ui.Options{
		Intercept: interceptAPI,
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
	return &webUI{srv: srv, set: set, metrics: metrics.New()}, nil
}

// observe feeds the metrics from the proxy's flows; call it before the
// proxy serves.
func (w *webUI) observe(bus *flow.Bus) { w.metrics.Subscribe(bus) }

// handler is the UI, with Prometheus metrics at /metrics. A scraper
// carries no UI token, and the metrics hold counts rather than traffic,
// so they are guarded as the listener is: --ui-auth when it is set, and
// on a loopback listener a Host naming loopback (a DNS-rebinding guard).
func (w *webUI) handler() http.Handler {
	scrape := w.metrics.Handler()
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			w.srv.ServeHTTP(rw, r)
			return
		}
		if w.set.Loopback && !loopbackHost(r.Host) {
			http.Error(rw, "hopscope metrics: Host "+strconv.Quote(r.Host)+" does not name this loopback listener", http.StatusMisdirectedRequest)
			return
		}
		if w.set.User != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(w.set.User))&subtle.ConstantTimeCompare([]byte(pass), []byte(w.set.Password)) != 1 {
				rw.Header().Set("WWW-Authenticate", `Basic realm="hopscope metrics", charset="UTF-8"`)
				http.Error(rw, "hopscope metrics: credentials required (--ui-auth)", http.StatusUnauthorized)
				return
			}
		}
		scrape.ServeHTTP(rw, r)
	})
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && addr.Unmap().IsLoopback()
}

// start listens on --ui and says where the UI is, with its token: on the
// event log and, when that goes to a file, on stderr too.
func (w *webUI) start(log zerolog.Logger, logToFile bool, stderr io.Writer) error {
	ln, err := net.Listen("tcp", w.set.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s (--ui): %w", w.set.Addr, err)
	}
	w.http = &http.Server{Handler: w.handler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
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
