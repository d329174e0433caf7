// Package proxy is hopscope's HTTP forward proxy: it accepts client
// connections, asks the policy about every request and tunnel, forwards
// plain HTTP, splices CONNECT tunnels and publishes a flow record (package
// flow) for every exchange, tunnel, denial, fault and WebSocket message to
// the bus Flows returns; the event log is one observer of it (package
// eventlog). It is the only package that uses goproxy, which it drives through its
// request, response and CONNECT hooks; everything goproxy gets wrong for a
// faithful proxy (hop-by-hop headers, streaming, errors, buffered bytes on
// hijack) is done here instead.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
)

// Server is a running proxy. Create it with New and start it with Serve.
type Server struct {
	opts Options
	// log takes diagnostics and the listen event; flows take the rest.
	log       zerolog.Logger
	flows     *flow.Bus
	dialer    *dialer
	transport *http.Transport
	goproxy   *goproxy.ProxyHttpServer
	http      *http.Server
	hijacked  connSet
	socks     socksListeners
	buffers   *bufferPool
	poller    *poller // where quiet relays wait without a goroutine
	wsPool    *wsframe.Pool
	via       viaCache
	// upstream sends bodiless forwarded requests; nil with a parent proxy.
	upstream   *upstreamClient
	upstreamRT goproxy.RoundTripper
	nextConn   atomic.Uint64
	tunnelAct  *goproxy.ConnectAction
	// leaves are the bumped destinations' certificates seen lately.
	leaves upstreamLeaves
}

// New builds a proxy from opts (nil for all defaults). The listen event
// and diagnostics go to log; flow records go to the bus Flows returns,
// which has no observer until one subscribes (see package eventlog for
// the event log).
func New(opts *Options, log zerolog.Logger) (*Server, error) {
	o := opts.withDefaults()
	if o.UpstreamProxy != nil && o.UpstreamProxy.Scheme != "http" {
		return nil, fmt.Errorf("upstream proxy %s: only http:// parent proxies are supported", o.UpstreamProxy.Redacted())
	}
	s := &Server{opts: o, log: log, flows: flow.NewBus(), buffers: newBufferPool(), poller: newPoller(), wsPool: wsframe.NewPool()}
	s.via = newViaCache(s.viaName())
	s.dialer = newDialer(o.Policy, o.DialTimeout, o.Resolver, o.UpstreamProxy)
	s.transport = &http.Transport{
		// Never from the environment: a proxy that silently chains to
		// whatever HTTP_PROXY says is a debugging nightmare.
		Proxy:                  nil,
		DialContext:            s.dialer.DialContext,
		TLSClientConfig:        o.UpstreamTLS,
		TLSHandshakeTimeout:    o.DialTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    64, // goproxy's default of 2 churns sockets under load
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: int64(o.MaxHeaderBytes),
		// Bodies pass unchanged: no Accept-Encoding added, no transparent
		// decompression.
		DisableCompression: true,
	}
	if o.UpstreamProxy != nil {
		s.transport.Proxy = http.ProxyURL(o.UpstreamProxy)
	} else {
		// HTTP/2 stays off, as it is with TLSClientConfig alone.
		s.transport.DialTLSContext = s.dialTLS
		s.upstream = &upstreamClient{
			dialer:         s.dialer,
			tls:            o.UpstreamTLS,
			headerTimeout:  o.ResponseHeaderTimeout,
			maxHeaderBytes: o.MaxHeaderBytes,
			maxIdlePerHost: s.transport.MaxIdleConnsPerHost,
			idleTimeout:    s.transport.IdleConnTimeout,
			order:          s.headOrder(),
		}
		s.upstreamRT = s.upstream.roundTripper(s.transport)
	}
	s.tunnelAct = &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: s.serveTunnel}
	s.goproxy = s.newGoproxy(log)
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    headRoom(o.MaxHeaderBytes),
		ConnContext:       s.connContext,
		ErrorLog:          goproxyLogger{log}.std(),
	}
	return s, nil
}

// newGoproxy configures goproxy as the dispatcher: CONNECT goes to
// serveTunnel, absolute-form requests through the forward hooks.
func (s *Server) newGoproxy(log zerolog.Logger) *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = goproxyLogger{log}
	gp.Verbose = false
	gp.Tr = s.transport
	gp.ConnectDial = nil // goproxy's default reads HTTPS_PROXY
	// We remove hop-by-hop headers ourselves (goproxy's own removal misses
	// most of them) and keep Accept-Encoding so bodies pass unchanged.
	gp.KeepHeader = true
	gp.KeepAcceptEncoding = true
	gp.NonproxyHandler = http.HandlerFunc(s.serveInfo)
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return s.tunnelAct, host
	})
	gp.OnRequest().DoFunc(s.prepareForward)
	gp.OnResponse().DoFunc(s.finishForward)
	return gp
}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = withHeadTap(ctx, c)
	return context.WithValue(ctx, connInfoKey{}, connInfo{id: s.nextConn.Add(1), client: c.RemoteAddr().String()})
}

// Serve accepts client connections on ln until Shutdown. It returns
// http.ErrServerClosed after a Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	fingerprint := ""
	if s.opts.CA != nil {
		fingerprint = s.opts.CA.Fingerprint()
	}
	s.logListen(ln.Addr().String(), s.opts.Policy.Summary(), s.opts.UpstreamTLS.InsecureSkipVerify, redactedURL(s.opts.UpstreamProxy), fingerprint)
	return s.http.Serve(headTapListener{Listener: ln, limit: headRoom(s.opts.MaxHeaderBytes), badLine: s.badLineAnswer(), stripSpaces: s.opts.Persona.Squid})
}

func redactedURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// in-flight exchanges and tunnels to finish; then it closes what is left,
// and last the flow bus, once observers have seen every record.
func (s *Server) Shutdown(ctx context.Context) error {
	s.socks.closeListeners()
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	s.socks.shutdown(ctx)
	if !s.hijacked.waitIdle(ctx) {
		s.hijacked.closeAll()
		// Closed sockets end every relay promptly; parked ones need a
		// goroutine to meet theirs.
		s.poller.wakeAll()
		s.hijacked.waitIdle(context.Background())
	}
	s.hijacked.closeAll()
	s.poller.close()
	s.transport.CloseIdleConnections()
	if s.upstream != nil {
		s.upstream.closeIdle()
	}
	s.flows.Close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutting down the proxy: %w", err)
	}
	return nil
}

// ServeHTTP is the front door: every request passes the client and auth
// checks here, then route's loop and policy checks, before goproxy
// dispatches it to a tunnel or the forward path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := connInfoFrom(r.Context())
	r = s.productStatusLine(r)
	r, headSize := s.clientHead(r)
	if s.refuseLargeHead(w, r, info, headSize) {
		return
	}
	if !s.clientAllowed(r) {
		s.refuse(w, r, info, clientDenial(clientIP(r)))
		return
	}
	if r.Method != http.MethodConnect && !r.URL.IsAbs() {
		if s.opts.Persona.any() {
			// The products have no page of their own for this.
			s.refuse(w, r, info, &proxyError{Status: http.StatusBadRequest, ProxyStatus: "http_request_error", Rule: "origin-form",
				Message: "a request in origin form is addressed to the proxy itself; send an absolute URL"})
			return
		}
		s.serveInfo(w, r)
		return
	}
	if !s.opts.Credentials.Empty() {
		if err := s.opts.Credentials.authenticate(r.Header); err != nil {
			w.Header().Set("Proxy-Authenticate", `Basic realm="`+s.opts.Pseudonym+`", charset="UTF-8"`)
			s.refuse(w, r, info, &proxyError{
				Status: http.StatusProxyAuthRequired, ProxyStatus: "http_request_denied", Rule: "auth",
				Message: "hopscope: " + err.Error(),
			})
			return
		}
	}
	if r.Method != http.MethodConnect && strings.EqualFold(r.URL.Hostname(), s.opts.CAHost) {
		s.serveCAPage(w, r)
		return
	}
	if r.Method != http.MethodConnect && strings.EqualFold(r.URL.Hostname(), s.opts.UIHost) {
		s.serveUI(w, r)
		return
	}
	s.route(w, r, info)
}

// serveInTunnel handles a request read from inside a bumped or plaintext
// tunnel. It must target the tunnel's own authority: goproxy would build
// the upstream URL from the inner Host header, which lets a client CONNECT
// to an allowed host and then talk to any other.
func (s *Server) serveInTunnel(w http.ResponseWriter, r *http.Request) {
	info := connInfoFrom(r.Context())
	r, headSize := s.clientHead(r)
	if s.refuseLargeHead(w, r, info, headSize) {
		return
	}
	t, _ := tunnelFrom(r.Context())
	if r.Method == http.MethodConnect {
		s.refuse(w, r, info, &proxyError{
			Status: http.StatusMethodNotAllowed, ProxyStatus: "http_request_error", Rule: "tunnel",
			Message: "hopscope: CONNECT inside a tunnel is not supported; send it to the proxy directly",
		})
		return
	}
	authority := r.Host
	if r.URL.IsAbs() {
		authority = r.URL.Host
	}
	if !sameAuthority(authority, t.scheme, t.target) {
		s.refuse(w, r, info, &proxyError{
			Status: http.StatusMisdirectedRequest, ProxyStatus: "http_request_denied", Rule: "tunnel-authority",
			Message: fmt.Sprintf("hopscope: this connection is a tunnel to %s; a request for %q needs a tunnel of its own", t.target.Target(), authority),
		})
		return
	}
	r.URL.Scheme = t.scheme
	r.URL.Host = urlHost(t.scheme, t.target)
	s.route(w, r, info)
}

// sameAuthority reports whether a Host value names target, with the
// scheme's default port when it has none.
func sameAuthority(authority, scheme string, target policy.Request) bool {
	if _, _, err := net.SplitHostPort(authority); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		authority = net.JoinHostPort(strings.Trim(authority, "[]"), port)
	}
	host, port, err := policy.SplitHostPort(authority)
	return err == nil && host == target.Host && port == target.Port
}

// urlHost writes target as a URL host, leaving out the scheme's default port.
func urlHost(scheme string, target policy.Request) string {
	if (scheme == "https" && target.Port == 443) || (scheme == "http" && target.Port == 80) {
		if strings.Contains(target.Host, ":") {
			return "[" + target.Host + "]"
		}
		return target.Host
	}
	return target.Target()
}

// route applies the checks every proxied request passes, wherever it came
// from, and dispatches it.
func (s *Server) route(w http.ResponseWriter, r *http.Request, info connInfo) {
	if viaContains(r.Header, s.opts.Pseudonym) {
		s.refuse(w, r, info, &proxyError{
			Status: http.StatusLoopDetected, ProxyStatus: "proxy_loop_detected", Rule: "via",
			Message: fmt.Sprintf("hopscope saw its own name %q in Via: this request has looped back to the proxy", s.opts.Pseudonym),
		})
		return
	}
	target, pe := requestTarget(r)
	if pe != nil {
		s.refuse(w, r, info, pe)
		return
	}
	if d := s.opts.Policy.Decide(target); !d.Allow {
		s.refuse(w, r, info, denial(target.Kind, target.Target(), d))
		return
	}
	if r.Method != http.MethodConnect && s.answerMaxForwards(w, r, info) {
		return
	}
	r = r.WithContext(withExchange(r.Context(), &exchange{target: target}))
	switch {
	case r.Method == http.MethodConnect:
		s.goproxy.ServeHTTP(hijackKeepingBuffer{w}, r)
	case isWebSocketUpgrade(r) && (info.tunnel != 0 || s.upgradeAllowed(r)):
		// squid and tinyproxy strip Upgrade only on requests they read;
		// inside a CONNECT tunnel they are blind, and so is the profile.
		s.serveWebSocket(w, r, info)
	default:
		s.forward(w, r, info)
	}
}

func (s *Server) clientAllowed(r *http.Request) bool { return s.clientAllowedAt(r.RemoteAddr) }

// clientAllowedAt checks a client's host:port against --allow-client.
func (s *Server) clientAllowedAt(remote string) bool {
	addr, err := netip.ParseAddrPort(remote)
	if err != nil {
		return len(s.opts.Policy.Clients) == 0
	}
	return s.opts.Policy.AllowClient(addr.Addr())
}

func clientIP(r *http.Request) string { return clientHost(r.RemoteAddr) }

// clientHost is the host part of a client's host:port.
func clientHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// requestTarget works out where a proxied request goes.
func requestTarget(r *http.Request) (policy.Request, *proxyError) {
	bad := func(msg string) *proxyError {
		return &proxyError{Status: http.StatusBadRequest, ProxyStatus: "http_request_error", Rule: "request", Message: "hopscope: " + msg}
	}
	if r.Method == http.MethodConnect {
		host, port, err := policy.SplitHostPort(r.URL.Host)
		if err != nil || r.URL.Host != r.RequestURI {
			return policy.Request{}, bad(fmt.Sprintf("CONNECT needs a target of the form host:port, got %q", r.RequestURI))
		}
		return policy.Request{Kind: policy.Connect, Host: host, Port: port}, nil
	}
	if r.URL.User != nil {
		// Browsers never send userinfo in a request; forwarding it would
		// carry credentials (or a phishing disguise such as
		// http://bank.example@evil.example/) to the destination.
		return policy.Request{}, bad(fmt.Sprintf("the request target %q carries a user name; hopscope does not forward credentials in URLs", r.URL.Redacted()))
	}
	// Some clients send WebSocket URLs as they are; they mean http(s).
	switch r.URL.Scheme {
	case "ws":
		r.URL.Scheme = "http"
	case "wss":
		r.URL.Scheme = "https"
	}
	hostport := r.URL.Host
	switch r.URL.Scheme {
	case "http":
		if r.URL.Port() == "" {
			hostport = net.JoinHostPort(r.URL.Hostname(), "80")
		}
	case "https":
		if r.URL.Port() == "" {
			hostport = net.JoinHostPort(r.URL.Hostname(), "443")
		}
	default:
		return policy.Request{}, bad(fmt.Sprintf("cannot forward %s:// URLs; only http:// and https://", r.URL.Scheme))
	}
	host, port, err := policy.SplitHostPort(hostport)
	if err != nil {
		return policy.Request{}, bad(fmt.Sprintf("no valid host in %q", r.URL.Redacted()))
	}
	return policy.Request{Kind: policy.Forward, Host: host, Port: port}, nil
}

// refuse answers with pe and publishes the denial and, for requests other
// than a CONNECT to the proxy, the exchange too.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, info connInfo, pe *proxyError) {
	target := r.URL.Host
	if r.Method != http.MethodConnect {
		target = r.URL.Redacted()
		if !r.URL.IsAbs() {
			target = r.Host + r.URL.RequestURI()
		}
	}
	var x *exchangeFlow
	if r.Method != http.MethodConnect || info.tunnel != 0 {
		x = s.startExchange(r, info, target)
	}
	s.deny(info, x.id(), r.Method, target, pe)
	if r.Method == http.MethodConnect && pe.Status != http.StatusProxyAuthRequired {
		// Nothing more can happen on this connection. After a 407 the
		// client may retry with credentials on the same one, as curl does.
		w.Header().Set("Connection", "close")
	}
	if a, ok := s.personaPage(r, pe); ok {
		a.writeTo(w)
	} else {
		pe.writeTo(w, s.opts.Pseudonym)
	}
	x.responseHead()
	x.finish(exchangeEnd{status: pe.Status, header: w.Header(), respBytes: int64(len(pe.body())),
		answeredBy: answeredByProxy, complete: true})
}

// serveInfo answers requests addressed to the proxy itself (origin form).
func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == pacPath || r.URL.Path == wpadPath {
		s.servePAC(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	status := http.StatusOK
	if r.URL.Path != "/" {
		status = http.StatusNotFound
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `This is hopscope, an intercepting HTTP forward proxy, not a web server.

Point a client at it as its proxy, for example:

    curl -x http://%[1]s http://example.com/
    HTTPS_PROXY=http://%[1]s HTTP_PROXY=http://%[1]s your-app

It forwards absolute-form requests (GET http://host/path) and tunnels CONNECT.
Browsers and operating systems can take their settings from the PAC file
http://%[1]s/proxy.pac.
`, r.Host)
}

// goproxyLogger sends goproxy's and net/http's printf-style diagnostics to
// the event log at debug level, where they cost nothing when it is off.
type goproxyLogger struct{ log zerolog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	if ev := g.log.Debug(); ev != nil {
		ev.Str("event", "diagnostic").Msg(strings.TrimSpace(fmt.Sprintf(format, v...)))
	}
}

// Write takes lines from a standard library *log.Logger (http.Server.ErrorLog).
func (g goproxyLogger) Write(p []byte) (int, error) {
	if ev := g.log.Debug(); ev != nil {
		ev.Str("event", "diagnostic").Msg(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (g goproxyLogger) std() *log.Logger { return log.New(g, "", 0) }
