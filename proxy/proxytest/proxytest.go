// Package proxytest runs hopscope inside other projects' Go tests, as
// net/http/httptest runs a server: Start listens on 127.0.0.1:0 with a
// throwaway CA, stops when the test ends, and lets the test assert on what
// the proxy saw and did, as typed flow records (package flow).
//
//	px := proxytest.Start(t, proxytest.WithProfile("squid"))
//	resp, err := px.Client().Get(url)              // through the proxy
//	d := px.WaitFor(t, proxytest.IsDenial("example.com:80"), time.Second)
//	d.Denial.Rule                                  // "connect-ports=443"
package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// TB is the part of testing.TB that Start and WaitFor use; *testing.T
// and *testing.B satisfy it, and so can a runnable example's helper.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Option changes how Start configures the proxy.
type Option func(*setup) error

type setup struct {
	cfg         config.Config
	user        string
	pass        string
	interceptor proxy.Interceptor
	onBus       []func(*flow.Bus)
	socks5      bool
}

// WithSOCKS5 serves SOCKS5 too, on another loopback port (SOCKS5Addr),
// under the same policy and credentials, as --socks5 does.
func WithSOCKS5() Option {
	return func(s *setup) error {
		s.socks5 = true
		return nil
	}
}

// WithBus calls subscribe with the proxy's flow bus before the proxy
// serves, so a test can add observers of its own (package metrics's, a
// store) that see every record.
func WithBus(subscribe func(*flow.Bus)) Option {
	return func(s *setup) error {
		s.onBus = append(s.onBus, subscribe)
		return nil
	}
}

// WithInterceptor gives the proxy an interceptor (package intercept's
// Engine), to pause, edit and inject WebSocket messages from a test.
func WithInterceptor(i proxy.Interceptor) Option {
	return func(s *setup) error {
		s.interceptor = i
		return nil
	}
}

// WithProfile applies a named profile, as --profile does: squid,
// tinyproxy (alias strip-upgrade), web-filter, ssl-inspect, auth,
// idle-timeout=DURATION.
func WithProfile(name string) Option {
	return func(s *setup) error { return config.ApplyProfile(&s.cfg, name) }
}

// WithFault injects a fault, as --fault does (e.g. "ws-close=1011@3").
func WithFault(spec string) Option {
	return func(s *setup) error {
		s.cfg.Fault = append(s.cfg.Fault, spec)
		return nil
	}
}

// WithFaultSeed makes probabilistic faults repeatable.
func WithFaultSeed(seed uint64) Option {
	return func(s *setup) error {
		s.cfg.FaultSeed = seed
		return nil
	}
}

// WithRules adds WebSocket rules.
func WithRules(rules ...policy.WSRuleSpec) Option {
	return func(s *setup) error {
		s.cfg.WebSocket.Rules = append(s.cfg.WebSocket.Rules, rules...)
		return nil
	}
}

// WithMITM bumps every TLS tunnel with the throwaway CA.
func WithMITM() Option {
	return func(s *setup) error {
		s.cfg.MITM = true
		return nil
	}
}

// WithAuth requires Basic proxy authentication with user and pass; URL,
// Client and Dialer send them.
func WithAuth(user, pass string) Option {
	return func(s *setup) error {
		s.cfg.Auth = append(s.cfg.Auth, user+":"+pass)
		s.user, s.pass = user, pass
		return nil
	}
}

// WithUpstreamCA makes the proxy trust these PEM roots for upstream TLS,
// for origins started with httptest.NewTLSServer or a private CA.
func WithUpstreamCA(pem []byte) Option {
	return func(s *setup) error {
		path := filepath.Join(s.cfg.CADir, "upstream-ca.pem")
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			return fmt.Errorf("WithUpstreamCA: keeping the roots for the proxy: %w", err)
		}
		s.cfg.UpstreamCA = path
		return nil
	}
}

// WithConfig changes any setting directly.
func WithConfig(change func(*config.Config)) Option {
	return func(s *setup) error {
		change(&s.cfg)
		return nil
	}
}

// Server is a running proxy.
type Server struct {
	addr      string
	socksAddr string
	ca        *certs.CA
	pool      *x509.CertPool
	user      string
	pass      string
	flows     *flowLog
}

// Start runs a proxy on 127.0.0.1:0 until the test ends. Test servers
// listen on random ports, so CONNECT is allowed to any port unless a
// profile or option says otherwise.
func Start(t TB, opts ...Option) *Server {
	t.Helper()
	s := &setup{cfg: config.Default()}
	s.cfg.ConnectPorts = "*"
	s.cfg.CADir = t.TempDir()
	for _, o := range opts {
		if err := o(s); err != nil {
			t.Fatalf("proxytest: %v", err)
		}
	}
	s.cfg.Listen = "127.0.0.1:0"
	ca, _, err := certs.LoadOrCreate(s.cfg.CADir)
	if err != nil {
		t.Fatalf("proxytest: creating the throwaway CA: %v", err)
	}
	popts, _, err := s.cfg.ProxyOptions()
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	if popts.CA == nil {
		popts.CA, popts.Issuer = ca, mitm.NewIssuer(ca, mitm.IssuerOptions{})
	}
	if s.interceptor != nil {
		popts.Interceptor = s.interceptor
	}
	srv, err := proxy.New(popts, zerolog.Nop())
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	flows := &flowLog{}
	srv.Flows().Subscribe(flows, flow.Options{Name: "proxytest", PayloadBytes: payloadBytes, BodyBytes: payloadBytes})
	for _, subscribe := range s.onBus {
		subscribe(srv.Flows())
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ln) }()
	serving := 1
	socksAddr := ""
	if s.socks5 {
		socksLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("proxytest: %v", err)
		}
		socksAddr = socksLn.Addr().String()
		serving++
		go func() { done <- srv.ServeSOCKS(socksLn) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxytest: shutdown: %v", err)
		}
		for range serving {
			<-done
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &Server{addr: ln.Addr().String(), socksAddr: socksAddr, ca: ca, pool: pool, user: s.user, pass: s.pass, flows: flows}
}

// SOCKS5Addr is the SOCKS5 listener's host:port (WithSOCKS5), "" without.
// Clients give it as socks5h://[user:pass@]ADDR.
func (s *Server) SOCKS5Addr() string { return s.socksAddr }

// Addr is the proxy's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the proxy URL to give clients, with credentials when WithAuth
// was used.
func (s *Server) URL() *url.URL {
	u := &url.URL{Scheme: "http", Host: s.addr}
	if s.user != "" {
		u.User = url.UserPassword(s.user, s.pass)
	}
	return u
}

// CertPool holds the proxy's throwaway CA: trust it to accept bumped TLS.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// CAPEM is the CA certificate, for clients configured by file.
func (s *Server) CAPEM() []byte { return s.ca.CertPEM }

// Client is an http.Client that uses the proxy and trusts its CA. Its
// transport never reads the proxy from the environment.
func (s *Server) Client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(s.URL()), TLSClientConfig: &tls.Config{RootCAs: s.pool}},
		Timeout:   30 * time.Second,
	}
}

// Dialer opens connections through the proxy with CONNECT, for WebSocket
// clients (gobwas/ws's NetDial, http.Transport's DialContext, ...).
func (s *Server) Dialer() *Dialer { return &Dialer{proxy: s} }

// Dialer dials through the proxy.
type Dialer struct{ proxy *Server }

// ErrRefused is returned (wrapped) when the proxy refuses a CONNECT; the
// error text carries the proxy's status and reason.
var ErrRefused = errors.New("proxy refused the tunnel")

// DialContext opens a tunnel to addr (host:port).
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", d.proxy.addr)
	if err != nil {
		return nil, fmt.Errorf("dialing the proxy: %w", err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if d.proxy.user != "" {
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(d.proxy.user+":"+d.proxy.pass)) + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sending CONNECT: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading the CONNECT answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("%w: CONNECT %s: %s (%s)", ErrRefused, addr, resp.Status, resp.Header.Get("X-Squid-Error")+resp.Header.Get("Proxy-Status"))
	}
	_ = conn.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		return &earlyConn{Conn: conn, early: append([]byte(nil), early...)}, nil
	}
	return conn, nil
}

// earlyConn returns bytes read with the CONNECT answer first.
type earlyConn struct {
	net.Conn
	early []byte
}

func (c *earlyConn) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Match is a test over flow records, for WaitFor. The Is functions build
// common ones; any func(flow.Record) bool will do.
type Match func(flow.Record) bool

// payloadBytes is how much of each message payload and body the harness
// keeps for matchers and assertions.
const payloadBytes = 64 << 10

// Flows returns every flow record the proxy has published so far, in
// order: exchanges, tunnels, denials, faults, WebSocket sessions and
// messages (see package flow). Message payloads and bodies hold their
// first 64 KiB.
func (s *Server) Flows() []flow.Record { return s.flows.all() }

// WaitFor waits until a record that match accepts has been published, and
// returns it; it fails the test after timeout, listing what was published.
// Records are published when what they report is complete, which can be
// just after the client has its answer.
func (s *Server) WaitFor(t TB, match Match, timeout time.Duration) flow.Record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range s.flows.all() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, r := range s.flows.all() {
				lines = append(lines, Describe(r))
			}
			t.Fatalf("proxytest: no matching record within %s; records:\n%s", timeout, strings.Join(lines, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Describe writes a record on one line, for failure messages.
func Describe(r flow.Record) string {
	var v any
	switch r.Kind {
	case flow.KindExchangeStart, flow.KindExchange:
		v = r.Exchange
	case flow.KindTunnelOpen, flow.KindTunnel:
		v = r.Tunnel
	case flow.KindDenial:
		v = r.Denial
	case flow.KindFault:
		v = r.Fault
	case flow.KindWSOpen, flow.KindWSClose:
		v = r.Session
	case flow.KindWSMessage:
		m := r.Message
		if len(m.Payload) > 64 {
			m.Payload = m.Payload[:64]
		}
		return fmt.Sprintf("%s %+v payload %q", r.Kind, m, m.Payload)
	case flow.KindWSViolation:
		v = r.Violation
	case flow.KindIntercept:
		v = r.Intercept
	}
	return fmt.Sprintf("%s %+v", r.Kind, v)
}

// IsKind matches records of kind k.
func IsKind(k flow.Kind) Match {
	return func(r flow.Record) bool { return r.Kind == k }
}

// IsMessage matches a WebSocket message from "client" or "server" whose
// payload (after decompression) contains text.
func IsMessage(from, text string) Match {
	return func(r flow.Record) bool {
		return r.Kind == flow.KindWSMessage && r.Message.From.String() == from && bytes.Contains(r.Message.Payload, []byte(text))
	}
}

// IsClose matches the end of a WebSocket with this close code (1006 for
// one that ended without a close handshake).
func IsClose(code int) Match {
	return func(r flow.Record) bool { return r.Kind == flow.KindWSClose && int(r.Session.Code) == code }
}

// IsDenial matches a refusal of target (host:port, or a URL for plain
// requests).
func IsDenial(target string) Match {
	return func(r flow.Record) bool { return r.Kind == flow.KindDenial && r.Denial.Target == target }
}

// IsFault matches a fault of this kind acting.
func IsFault(kind string) Match {
	return func(r flow.Record) bool { return r.Kind == flow.KindFault && r.Fault.Fault == kind }
}

// IsExchange matches a complete exchange with this method and URL.
func IsExchange(method, url string) Match {
	return func(r flow.Record) bool {
		return r.Kind == flow.KindExchange && r.Exchange.Method == method && r.Exchange.URL == url
	}
}

// flowLog is the harness's observer: it keeps every record.
type flowLog struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (l *flowLog) Observe(batch []flow.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, batch...)
}

func (l *flowLog) all() []flow.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]flow.Record(nil), l.recs...)
}
