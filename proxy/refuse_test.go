package proxy_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// checkProxyAnswer asserts the proxy answered status itself, with a
// Proxy-Status naming errType and a body containing every word in want.
func checkProxyAnswer(t *testing.T, resp *http.Response, status int, errType string, want ...string) {
	t.Helper()
	body := readBody(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
	ps := resp.Header.Get("Proxy-Status")
	if !strings.HasPrefix(ps, "hopscope; error="+errType) || !strings.Contains(ps, "; details=\"") {
		t.Errorf("Proxy-Status = %q, want error=%s", ps, errType)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("body %q does not mention %q", body, w)
		}
	}
	if strings.Contains(body, "dial tcp") || strings.Contains(body, "net/http:") {
		t.Errorf("body leaks a raw Go error: %q", body)
	}
}

func TestConnectPortDenied(t *testing.T) {
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("CONNECT example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusForbidden, "http_request_denied",
		"example.com:8443", "connect-ports=443", "--connect-ports 443,8443")
	e := px.waitEvent("deny", nil)
	if e.str("target") != "example.com:8443" || e.str("rule") != "connect-ports=443" || e.num("status") != 403 || e.str("reason") == "" ||
		e.str("hint") != "To allow it, start hopscope with --connect-ports 443,8443." {
		t.Errorf("deny event %v", e)
	}
}

func TestHostRulesOnPlainRequests(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	_, port, _ := net.SplitHostPort(up.addr())
	cases := []struct {
		name   string
		allow  []string
		deny   []string
		host   string
		status int
		rule   string
	}{
		{"deny by name", nil, []string{"blocked.test"}, "blocked.test", 403, "deny-host=blocked.test"},
		{"deny by wildcard", nil, []string{"*.test"}, "a.blocked.test", 403, "deny-host=*.test"},
		{"allow list refuses others", []string{"only.example"}, nil, "127.0.0.1", 403, "allow-host"},
		{"allow by IP admits", []string{"127.0.0.1"}, nil, "127.0.0.1", 200, ""},
		{"deny by CIDR on literal", nil, []string{"127.0.0.0/8"}, "127.0.0.1", 403, "deny-host=127.0.0.0/8"},
		{"deny with other port leaves this one", nil, []string{"127.0.0.1:1"}, "127.0.0.1", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := policy.New()
			for _, s := range tc.allow {
				pol.Allow = append(pol.Allow, mustPattern(t, s))
			}
			for _, s := range tc.deny {
				pol.Deny = append(pol.Deny, mustPattern(t, s))
			}
			px := startProxy(t, &proxy.Options{Policy: pol})
			target := tc.host + ":" + port
			resp, _, _ := px.rawRequest("GET http://" + target + "/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
			if tc.status == 200 {
				if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("got %d %q, want the origin's answer", resp.StatusCode, body)
				}
				return
			}
			checkProxyAnswer(t, resp, tc.status, "", target, tc.rule)
			if e := px.waitEvent("deny", nil); e.str("rule") != tc.rule {
				t.Errorf("deny rule %q, want %q", e.str("rule"), tc.rule)
			}
			if e := px.waitEvent("http", nil); e.num("status") != float64(tc.status) {
				t.Errorf("http event status %v", e["status"])
			}
		})
	}
}

func mustPattern(t testing.TB, s string) policy.HostPattern {
	t.Helper()
	p, err := policy.ParseHostPattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A name that resolves into a denied range is refused when the proxy dials,
// for plain requests and tunnels alike.
func TestNameResolvingIntoDeniedRange(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	_, port, _ := net.SplitHostPort(up.addr())
	pol := openPolicy()
	pol.Deny = []policy.HostPattern{mustPattern(t, "127.0.0.0/8"), mustPattern(t, "::1")}
	px := startProxy(t, &proxy.Options{Policy: pol})

	resp, _, _ := px.rawRequest("GET http://localhost:" + port + "/ HTTP/1.1\r\nHost: localhost:" + port + "\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusForbidden, "destination_ip_prohibited", "localhost:"+port, "resolved to")

	resp, _, _ = px.rawRequest("CONNECT localhost:" + port + " HTTP/1.1\r\nHost: localhost:" + port + "\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusForbidden, "destination_ip_prohibited", "localhost:"+port)
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.heads) != 0 {
		t.Errorf("the denied destination received %d requests", len(up.heads))
	}
}

func TestClientAllowlist(t *testing.T) {
	pol := policy.New()
	pol.Clients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	px := startProxy(t, &proxy.Options{Policy: pol})
	resp, _, _ := px.rawRequest("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusForbidden, "http_request_denied", "--allow-client 127.0.0.1")
	if e := px.waitEvent("deny", nil); e.str("rule") != "allow-client" {
		t.Errorf("deny event %v", e)
	}
}

func TestProxyAuthentication(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	creds := proxy.NewCredentials()
	if err := creds.AddPair("alice:s3cret"); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("hunter2"), bcrypt.MinCost)
	if err := creds.AddHtpasswd([]byte("# users\nbob:"+string(hash)+"\n"), "test.htpasswd"); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, &proxy.Options{Credentials: creds, Policy: openPolicy()})
	basic := func(userpass string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass)) }
	cases := []struct {
		name, header string
		status       int
		reason       string
	}{
		{"none", "", 407, "requires credentials"},
		{"bad base64", "Basic !!!not-base64!!!", 407, "malformed"},
		{"no colon", basic("alice"), 407, "malformed"},
		{"other scheme", "Bearer abc", 407, "only the Basic scheme"},
		{"wrong password", basic("alice:nope"), 407, "wrong user name or password"},
		{"unknown user", basic("mallory:s3cret"), 407, "wrong user name or password"},
		{"plain user", basic("alice:s3cret"), 200, ""},
		{"htpasswd bcrypt user", basic("bob:hunter2"), 200, ""},
		{"htpasswd bcrypt again (cached)", basic("bob:hunter2"), 200, ""},
		{"htpasswd wrong after cache", basic("bob:hunter3"), 407, "wrong"},
		{"scheme is case-insensitive", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")), 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n"
			if tc.header != "" {
				raw += "Proxy-Authorization: " + tc.header + "\r\n"
			}
			resp, _, _ := px.rawRequest(raw + "\r\n")
			if tc.status == 200 {
				if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				if v := headerValues(up.lastHead(t), "Proxy-Authorization"); len(v) != 0 {
					t.Errorf("Proxy-Authorization was forwarded: %q", v)
				}
				return
			}
			if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="hopscope", charset="UTF-8"` {
				t.Errorf("Proxy-Authenticate = %q", got)
			}
			checkProxyAnswer(t, resp, tc.status, "http_request_denied", tc.reason)
		})
	}

	// CONNECT is authenticated too, and a client can retry on the same
	// connection after the 407, as curl does.
	resp, conn, br := px.rawRequest("CONNECT " + up.addr() + " HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
	checkProxyAnswer(t, resp, 407, "http_request_denied", "requires credentials")
	_, _ = conn.Write([]byte("CONNECT " + up.addr() + " HTTP/1.1\r\nHost: " + up.addr() + "\r\nProxy-Authorization: " + basic("alice:s3cret") + "\r\n\r\n"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("authenticated CONNECT on the same connection: %v %v", resp, err)
	}
}

func TestLoopDetected(t *testing.T) {
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 other, 1.0 HopScope (comment)\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusLoopDetected, "proxy_loop_detected", "Via")
}

// A request that comes back through a proxy with the same pseudonym (here a
// second hopscope chained to the first) ends in 508, not in a request storm.
func TestLoopThroughChain(t *testing.T) {
	parent := startProxy(t, nil)
	child := startProxy(t, &proxy.Options{UpstreamProxy: parent.url()})
	resp, err := child.client().Get("http://example.invalid/x")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusLoopDetected || resp.Header.Get("Via") == "" {
		t.Errorf("got %d %q, want the parent's 508 passed back with Via", resp.StatusCode, body)
	}
}

func TestUpstreamFailures(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	hang, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept, read nothing, answer nothing
		}
	}()

	tlsOrigin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsOrigin.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is the point
	tlsOrigin.StartTLS()
	defer tlsOrigin.Close()
	failingResolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}

	px := startProxy(t, &proxy.Options{
		Policy:                openPolicy(),
		ResponseHeaderTimeout: 300 * time.Millisecond,
		Resolver:              failingResolver,
	})
	cases := []struct {
		name    string
		url     string
		status  int
		errType string
		words   []string
	}{
		{"refused", "http://" + closedAddr + "/", 502, "connection_refused", []string{closedAddr, "refused"}},
		{"no answer", "http://" + hang.Addr().String() + "/", 504, "connection_timeout", []string{"did not answer in time"}},
		{"unresolvable", "http://no-such-host.invalid/", 502, "dns_error", []string{"could not resolve", "no-such-host.invalid"}},
		{"untrusted certificate", tlsOrigin.URL + "/", 502, "tls_certificate_error", []string{"--upstream-ca", "certificate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := px.rawRequest("GET " + tc.url + " HTTP/1.1\r\nHost: x\r\n\r\n")
			checkProxyAnswer(t, resp, tc.status, tc.errType, tc.words...)
		})
	}
	t.Run("CONNECT refused", func(t *testing.T) {
		resp, _, _ := px.rawRequest("CONNECT " + closedAddr + " HTTP/1.1\r\nHost: " + closedAddr + "\r\n\r\n")
		checkProxyAnswer(t, resp, 502, "connection_refused", closedAddr)
		e := px.waitEvent("tunnel", nil)
		if e.num("status") != 502 || e.str("error") == "" {
			t.Errorf("tunnel event %v", e)
		}
	})
	t.Run("CONNECT unresolvable", func(t *testing.T) {
		resp, _, _ := px.rawRequest("CONNECT no-such-host.invalid:443 HTTP/1.1\r\nHost: no-such-host.invalid:443\r\n\r\n")
		checkProxyAnswer(t, resp, 502, "dns_error", "no-such-host.invalid")
	})
}

// --upstream-ca makes an origin with a private root trusted, and
// --insecure-upstream skips verification altogether.
func TestUpstreamTLSTrust(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("secure"))
	}))
	defer origin.Close()
	pool := origin.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	for name, conf := range map[string]*tls.Config{
		"trusted root":  {RootCAs: pool},
		"insecure skip": {InsecureSkipVerify: true},
	} {
		t.Run(name, func(t *testing.T) {
			px := startProxy(t, &proxy.Options{UpstreamTLS: conf})
			resp, _, _ := px.rawRequest("GET " + origin.URL + "/ HTTP/1.1\r\nHost: x\r\n\r\n")
			if body := readBody(t, resp); resp.StatusCode != 200 || body != "secure" {
				t.Errorf("got %d %q", resp.StatusCode, body)
			}
		})
	}
}

// An answer cut short by the destination reaches the client as a cut-short
// answer (not a complete one), and the event says so.
func TestAnswerCutShort(t *testing.T) {
	cases := map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
		// A chunked answer that ends without its last chunk: passing it
		// on and ending it cleanly would make the cut invisible.
		"chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n",
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			up := startRawUpstream(t, answer)
			px := startProxy(t, nil)
			resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("client read %q with no error: a cut answer must not look complete", body)
			}
			if string(body) != "only ten b" {
				t.Errorf("client got %q, want the bytes that did arrive", body)
			}
			e := px.waitEvent("http", nil)
			if !strings.Contains(e.str("error"), "cut short") || e.num("status") != 200 {
				t.Errorf("http event %v", e)
			}
		})
	}
}

// A destination that answers with something that is not HTTP gets the
// client a 502 saying so, on both upstream paths (bodiless requests go
// through hopscope's client, others through http.Transport).
func TestNonHTTPAnswers(t *testing.T) {
	answers := map[string]struct{ raw, errType string }{
		"ssh banner":       {"SSH-2.0-OpenSSH_9.6\r\n", "http_protocol_error"},
		"bad status code":  {"HTTP/1.1 abc OK\r\n\r\n", "http_protocol_error"},
		"binary":           {"\x16\x03\x01\x00\x05hello", "http_protocol_error"},
		"truncated header": {"HTTP/1.1 200 OK\r\nContent-Le", "http_protocol_error"},
	}
	for name, tc := range answers {
		for _, method := range []string{"GET", "POST"} {
			t.Run(name+"/"+method, func(t *testing.T) {
				up := startRawUpstream(t, tc.raw)
				px := startProxy(t, nil)
				raw := method + " http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n"
				if method == "POST" {
					raw += "Content-Length: 4\r\n\r\nbody"
				} else {
					raw += "\r\n"
				}
				resp, _, _ := px.rawRequest(raw)
				checkProxyAnswer(t, resp, http.StatusBadGateway, tc.errType, up.addr())
			})
		}
	}
}
