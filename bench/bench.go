// Package bench measures a proxy against the same work done directly, on
// loopback, case by case: small GETs, a bulk CONNECT download, bumped
// HTTPS with and without keep-alive, WebSocket echo and throughput, and
// the memory idle connections cost. Each figure is a median of rounds,
// and the ratio proxy/direct is the number to compare across proxies.
package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// Options configure a run.
type Options struct {
	// Proxy is host:port of a proxy to measure. Empty: hopscope in-process,
	// set up as each case needs (bumping for HTTPS, inspecting WebSockets).
	Proxy string
	// ProxyCA is the PEM CA of an external proxy that bumps HTTPS; without
	// it the bumped cases trust whatever certificate the proxy presents.
	ProxyCA []byte
	// Rounds per case and side; the median is reported. Default 3.
	Rounds int
	// RoundTime bounds each round. Default 1.5s.
	RoundTime time.Duration
	// Cases selects cases by name; empty: all.
	Cases []string
	// Progress receives a line as each case starts and ends; nil: none.
	Progress io.Writer
}

// Result is one row of the table.
type Result struct {
	Case   string
	Unit   string
	Direct float64 // median over rounds
	Proxy  float64
	// Ratio is Proxy/Direct for rates, Proxy-Direct for memory.
	Ratio float64
	// Latency percentiles of single operations, where a case has them.
	DirectP50, DirectP99, ProxyP50, ProxyP99 time.Duration
	Note                                     string
}

// caseDef is one benchmark case.
type caseDef struct {
	name string
	unit string
	// run does one round against dial (nil: direct) and returns the rate
	// and the latencies of single operations.
	run func(ctx context.Context, e *env, viaProxy bool) (float64, []time.Duration, error)
	// memory cases report KiB per connection and no ratio of rates.
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

func allCases() []caseDef {
	return []caseDef{
		{name: "small-get", unit: "req/s", run: smallGET},
		{name: "connect-10MiB", unit: "MB/s", run: connectDownload},
		{name: "https-keepalive-bumped", unit: "req/s", run: func(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
			return httpsRequests(ctx, e, via, true)
		}},
		{name: "https-newconn-bumped", unit: "req/s", run: func(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
			return httpsRequests(ctx, e, via, false)
		}},
		{name: "ws-echo-64B-x100", unit: "msg/s", run: wsEcho64},
		{name: "ws-1MiB", unit: "MB/s", run: wsBig},
		{name: "idle-ws-memory", unit: "KiB/conn", run: idleWS, memory: true},
		{name: "idle-tunnel-memory", unit: "KiB/conn", run: idleTunnel, memory: true},
	}
}

// Run measures every selected case and returns the table.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	if opts.RoundTime <= 0 {
		opts.RoundTime = 1500 * time.Millisecond
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	e, err := newEnv(opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var results []Result
	for _, c := range allCases() {
		if len(opts.Cases) > 0 && !slices.Contains(opts.Cases, c.name) {
			continue
		}
		if c.memory && opts.Proxy != "" {
			results = append(results, Result{Case: c.name, Unit: c.unit, Note: "in-process only"})
			continue
		}
		fmt.Fprintf(progress, "%-24s ", c.name)
		r, err := e.measure(ctx, c, opts)
		if err != nil {
			fmt.Fprintf(progress, "failed: %v\n", err)
			results = append(results, Result{Case: c.name, Unit: c.unit, Note: "failed: " + err.Error()})
			continue
		}
		fmt.Fprintf(progress, "direct %.1f, proxy %.1f %s\n", r.Direct, r.Proxy, r.Unit)
		results = append(results, r)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	return results, nil
}

// measure runs rounds of a case, alternating direct and proxied, and keeps
// the medians.
func (e *env) measure(ctx context.Context, c caseDef, opts Options) (Result, error) {
	var direct, proxied []float64
	var dLat, pLat []time.Duration
	for range opts.Rounds {
		for _, via := range []bool{false, true} {
			rate, lat, err := c.run(ctx, e, via)
			if err != nil {
				return Result{}, err
			}
			if via {
				proxied, pLat = append(proxied, rate), append(pLat, lat...)
			} else {
				direct, dLat = append(direct, rate), append(dLat, lat...)
			}
		}
	}
	r := Result{Case: c.name, Unit: c.unit, Direct: median(direct), Proxy: median(proxied)}
	if c.memory {
		r.Ratio = r.Proxy - r.Direct // the proxy's own cost per connection
	} else if r.Direct > 0 {
		r.Ratio = r.Proxy / r.Direct
	}
	r.DirectP50, r.DirectP99 = percentile(dLat, 50), percentile(dLat, 99)
	r.ProxyP50, r.ProxyP99 = percentile(pLat, 50), percentile(pLat, 99)
	return r, nil
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

// Format writes the table.
func Format(w io.Writer, results []Result) {
	fmt.Fprintf(w, "%-24s %-9s %12s %12s %8s %10s %10s %10s %10s\n", "case", "unit", "direct", "proxy", "ratio", "d-p50", "d-p99", "p-p50", "p-p99")
	for _, r := range results {
		if r.Note != "" && r.Direct == 0 && r.Proxy == 0 {
			fmt.Fprintf(w, "%-24s %-9s %s\n", r.Case, r.Unit, r.Note)
			continue
		}
		ratio := fmt.Sprintf("%.2f", r.Ratio)
		if strings.HasPrefix(r.Unit, "KiB") {
			ratio = fmt.Sprintf("+%.1f", r.Ratio)
		}
		fmt.Fprintf(w, "%-24s %-9s %12.1f %12.1f %8s %10s %10s %10s %10s\n", r.Case, r.Unit, r.Direct, r.Proxy, ratio,
			dur(r.DirectP50), dur(r.DirectP99), dur(r.ProxyP50), dur(r.ProxyP99))
	}
	fmt.Fprintln(w, "ratio: proxy/direct for rates (1.00 = no cost); for memory, the proxy's KiB per idle connection.")
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// env is the loopback world: origins, and the proxies each case uses.
type env struct {
	opts        Options
	httpOrigin  *httptest.Server
	tlsOrigin   *httptest.Server
	wsOrigin    *httptest.Server
	bulk        net.Listener
	originRoots *x509.CertPool
	proxyRoots  *x509.CertPool
	// in-process proxies, by role; their addresses, or the external one
	plainAddr, bumpAddr string
	stops               []func()
}

const bulkSize = 10 << 20

func newEnv(opts Options) (*env, error) {
	e := &env{opts: opts}
	e.httpOrigin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello, small world")
	}))
	e.stops = append(e.stops, e.httpOrigin.Close)
	caDir, err := tempDir()
	if err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() { removeAll(caDir) })
	originCA, err := certs.Create(caDir+"/origin", false)
	if err != nil {
		return nil, err
	}
	e.originRoots = x509.NewCertPool()
	e.originRoots.AddCert(originCA.Cert)
	e.tlsOrigin = httptest.NewUnstartedServer(e.httpOrigin.Config.Handler)
	e.tlsOrigin.TLS = mitm.NewIssuer(originCA, mitm.IssuerOptions{}).ServerConfig("localhost", nil)
	e.tlsOrigin.Config.ErrorLog = discardLog()
	e.tlsOrigin.StartTLS()
	e.stops = append(e.stops, e.tlsOrigin.Close)
	e.wsOrigin = httptest.NewServer(http.HandlerFunc(wsEchoHandler))
	e.stops = append(e.stops, e.wsOrigin.Close)
	if e.bulk, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() { e.bulk.Close() })
	go serveBulk(e.bulk)

	if opts.Proxy != "" {
		e.plainAddr, e.bumpAddr = opts.Proxy, opts.Proxy
		if len(opts.ProxyCA) > 0 {
			e.proxyRoots = x509.NewCertPool()
			e.proxyRoots.AppendCertsFromPEM(opts.ProxyCA)
		}
		return e, nil
	}
	proxyCA, err := certs.Create(caDir+"/proxy", false)
	if err != nil {
		return nil, err
	}
	e.proxyRoots = x509.NewCertPool()
	e.proxyRoots.AddCert(proxyCA.Cert)
	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	if e.plainAddr, err = e.startProxy(&proxy.Options{Policy: pol}); err != nil {
		return nil, err
	}
	bumpPol := policy.New()
	bumpPol.ConnectPorts = policy.MustParsePortSet("*")
	bumpPol.Bump.All = true
	e.bumpAddr, err = e.startProxy(&proxy.Options{Policy: bumpPol, CA: proxyCA,
		Issuer: mitm.NewIssuer(proxyCA, mitm.IssuerOptions{}), UpstreamTLS: &tls.Config{RootCAs: e.originRoots}})
	return e, err
}

// startProxy runs hopscope in-process, logging every event at the default
// level to nowhere: the work of formatting events is part of the cost.
func (e *env) startProxy(opts *proxy.Options) (string, error) {
	logger := zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	srv, err := proxy.New(opts, logger)
	if err != nil {
		return "", err
	}
	eventlog.Subscribe(srv.Flows(), logger, eventlog.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = srv.Serve(ln) }()
	e.stops = append(e.stops, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String(), nil
}

func (e *env) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

func serveBulk(ln net.Listener) {
	chunk := make([]byte, 256<<10)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// The client speaks first, so a tunnel is sniffed and spliced.
			if _, err := c.Read(make([]byte, 1)); err != nil {
				return
			}
			for sent := 0; sent < bulkSize; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
	}
}

func wsEchoHandler(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	for {
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
			return
		}
	}
}

// loop runs op from workers goroutines for one round (the clock starts
// here, after the case's set-up), and returns operations per second and
// each operation's latency.
func (e *env) loop(parent context.Context, workers int, op func(worker int) error) (float64, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, e.opts.RoundTime)
	defer cancel()
	var count atomic.Int64
	var mu sync.Mutex
	var lats []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(w); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
					break
				}
				mine = append(mine, time.Since(t0))
				count.Add(1)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds(), lats, firstErr
}
