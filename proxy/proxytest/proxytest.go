// Package proxytest runs hopscope inside other projects' Go tests, as
// net/http/httptest runs a server: Start listens on 127.0.0.1:0 with a
// throwaway CA, stops when the test ends, and lets the test assert on what
// the proxy saw and did.
//
//	px := proxytest.Start(t, proxytest.WithProfile("squid"))
//	resp, err := px.Client().Get(url)              // through the proxy
//	px.WaitFor(t, proxytest.IsDenial("example.com:80"), time.Second)
package proxytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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
	"github.com/hopscope/hopscope/eventlog"
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
	cfg  config.Config
	user string
	pass string
}

// WithProfile applies a named profile, as --profile does: squid,
// web-filter, strip-upgrade, ssl-inspect, auth, idle-timeout=DURATION.
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
			return err
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
	addr   string
	ca     *certs.CA
	pool   *x509.CertPool
	user   string
	pass   string
	events *eventLog
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
	logOpts, err := s.cfg.EventLogOptions()
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	log := &eventLog{}
	logger := zerolog.New(log).With().Timestamp().Logger()
	srv, err := proxy.New(popts, logger)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	eventlog.Subscribe(srv.Flows(), logger, logOpts)
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxytest: shutdown: %v", err)
		}
		<-done
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &Server{addr: ln.Addr().String(), ca: ca, pool: pool, user: s.user, pass: s.pass, events: log}
}

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

// Event is one event the proxy wrote (see README.md for every name and
// field).
type Event struct {
	Name string
	// Time is when the proxy wrote the event, to the microsecond (the
	// "time" field has whatever precision the logger was set to).
	Time   time.Time
	Fields map[string]any
}

// Str returns a string field, or "".
func (e Event) Str(key string) string {
	v, _ := e.Fields[key].(string)
	return v
}

// Int returns a number field, or 0.
func (e Event) Int(key string) int64 {
	v, _ := e.Fields[key].(float64)
	return int64(v)
}

func (e Event) String() string {
	b, _ := json.Marshal(e.Fields)
	return string(b)
}

// Events returns every event written so far, in order.
func (s *Server) Events() []Event { return s.events.all() }

// WaitFor waits until an event that match accepts has been written, and
// returns it; it fails the test after timeout, listing what was written.
func (s *Server) WaitFor(t TB, match func(Event) bool, timeout time.Duration) Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range s.events.all() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, e := range s.events.all() {
				names = append(names, e.Name+" "+e.String())
			}
			t.Fatalf("proxytest: no matching event within %s; events:\n%s", timeout, strings.Join(names, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Named matches events by name ("ws_message", "deny", ...).
func Named(name string) func(Event) bool {
	return func(e Event) bool { return e.Name == name }
}

// IsMessage matches a WebSocket message from "client" or "server" whose
// preview contains text.
func IsMessage(from, text string) func(Event) bool {
	return func(e Event) bool {
		return e.Name == eventlog.EventWSMessage && e.Str("from") == from && strings.Contains(e.Str("preview"), text)
	}
}

// IsClose matches the end of a WebSocket with this close code.
func IsClose(code int) func(Event) bool {
	return func(e Event) bool { return e.Name == eventlog.EventWSClose && e.Int("code") == int64(code) }
}

// IsDenial matches a refusal of target (host:port, or a URL for plain
// requests).
func IsDenial(target string) func(Event) bool {
	return func(e Event) bool { return e.Name == eventlog.EventDeny && e.Str("target") == target }
}

// IsFault matches a fault of this kind acting.
func IsFault(kind string) func(Event) bool {
	return func(e Event) bool { return e.Name == eventlog.EventFault && e.Str("fault") == kind }
}

// eventLog collects the proxy's JSON event lines.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	buf    bytes.Buffer
}

func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadBytes('\n')
		if err != nil {
			l.buf.Write(line) // an incomplete line waits for its end
			break
		}
		var fields map[string]any
		if json.Unmarshal(line, &fields) != nil {
			continue
		}
		e := Event{Fields: fields, Time: time.Now()}
		e.Name, _ = fields["event"].(string)
		l.events = append(l.events, e)
	}
	return len(p), nil
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}
