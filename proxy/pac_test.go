package proxy_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// pacEngine evaluates a PAC file as a browser does: the script with the
// standard helper functions, FindProxyForURL(url, host) with the URL's
// host as browsers pass it (lower case, IPv6 without brackets).
type pacEngine struct {
	vm   *goja.Runtime
	find goja.Callable
	// resolved lists the names the script asked to resolve.
	resolved []string
}

func newPACEngine(t *testing.T, script string) *pacEngine {
	t.Helper()
	utils, err := os.ReadFile("testdata/pac_utils.js")
	if err != nil {
		t.Fatal(err)
	}
	e := &pacEngine{vm: goja.New()}
	resolve := func(host string) goja.Value {
		e.resolved = append(e.resolved, host)
		return goja.Null()
	}
	_ = e.vm.Set("dnsResolve", resolve)
	_ = e.vm.Set("myIpAddress", func() string { return "127.0.0.1" })
	if _, err := e.vm.RunScript("pac_utils.js", string(utils)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.vm.RunScript("proxy.pac", script); err != nil {
		t.Fatalf("the PAC file does not run: %v\n%s", err, script)
	}
	find, ok := goja.AssertFunction(e.vm.Get("FindProxyForURL"))
	if !ok {
		t.Fatalf("the PAC file defines no FindProxyForURL:\n%s", script)
	}
	e.find = find
	return e
}

func (e *pacEngine) proxyFor(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.find(goja.Undefined(), e.vm.ToValue(rawURL), e.vm.ToValue(strings.ToLower(u.Hostname())))
	if err != nil {
		t.Fatalf("FindProxyForURL(%q): %v", rawURL, err)
	}
	return v.String()
}

// fetchPAC gets /proxy.pac from the proxy's port as a browser would, with
// host as the Host header.
func fetchPAC(t *testing.T, addr, host string) (string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/proxy.pac", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("GET /proxy.pac: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return string(body), resp
}

func TestPACFile(t *testing.T) {
	var noProxy []policy.HostPattern
	for _, s := range []string{"intranet.example", "*.corp.example", "10.0.0.0/8", "[fd00::]/8", "db.internal:5432", "192.0.2.7"} {
		noProxy = append(noProxy, mustPattern(t, s))
	}
	px := startSOCKS(t, &proxy.Options{Policy: openPolicy(), NoProxy: noProxy, NoProxyPlainNames: true})
	script, resp := fetchPAC(t, px.addr, px.addr)
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	// A client that reached the proxy by another name is not sent to a
	// SOCKS5 listener on loopback, which it could not reach.
	_, port, _ := net.SplitHostPort(px.addr)
	remote, _ := fetchPAC(t, px.addr, "devbox.lan:"+port)
	if got := newPACEngine(t, remote).proxyFor(t, "http://example.com/"); got != "PROXY devbox.lan:"+port {
		t.Errorf("from elsewhere: %q", got)
	}
	e := newPACEngine(t, script)
	_, socksPort, _ := net.SplitHostPort(px.socksAddr)
	through := "PROXY " + px.addr + "; SOCKS5 127.0.0.1:" + socksPort
	for _, tc := range []struct{ url, want string }{
		{"http://example.com/", through},
		{"https://example.com/path?q=1", through},
		{"ws://chat.example.com/socket", through},
		{"http://localhost:3000/", "DIRECT"},
		{"http://app.localhost/", "DIRECT"},
		{"http://127.0.0.5:8000/", "DIRECT"},
		{"http://[::1]:8080/", "DIRECT"},
		{"http://intranet.example/", "DIRECT"},
		{"http://INTRANET.example./", "DIRECT"},
		{"http://www.intranet.example/", through}, // an exact name is not a domain
		{"https://a.b.corp.example/", "DIRECT"},
		{"https://corp.example/", through}, // *.corp.example is below it only
		{"https://xcorp.example/", through},
		{"http://10.200.3.4/", "DIRECT"},
		{"http://11.0.0.1/", through},
		{"http://192.0.2.7/", "DIRECT"},
		{"http://192.0.2.8/", through},
		{"http://[fd12:3456::1]/", "DIRECT"},
		{"http://[fe80::1]/", through},
		{"http://db.internal:5432/", "DIRECT"},
		{"https://db.internal/", through},
		{"http://printer/", "DIRECT"}, // <local>
		{"http://ten.example/", through},
	} {
		if got := e.proxyFor(t, tc.url); got != tc.want {
			t.Errorf("FindProxyForURL(%s) = %q, want %q", tc.url, got, tc.want)
		}
	}
	if len(e.resolved) > 0 {
		t.Errorf("the PAC file resolved %q; a PAC that resolves names stalls the browser", e.resolved)
	}
}

// The PAC names the proxy as the client reached it, so the same URL works
// for a VM that knows this machine by another name; without SOCKS5 it
// offers only the HTTP proxy, and without --no-proxy only loopback
// bypasses.
func TestPACFileNamesTheProxyAsReached(t *testing.T) {
	px := startProxy(t, &proxy.Options{})
	_, port, _ := net.SplitHostPort(px.addr)
	script, _ := fetchPAC(t, px.addr, "devbox.lan:"+port)
	e := newPACEngine(t, script)
	if got := e.proxyFor(t, "http://10.0.0.1/"); got != "PROXY devbox.lan:"+port {
		t.Errorf("through %q", got)
	}
	if got := e.proxyFor(t, "http://printer/"); got != "PROXY devbox.lan:"+port {
		t.Errorf("plain names without <local>: %q", got)
	}
	script, _ = fetchPAC(t, px.addr, "devbox.lan")
	if got := newPACEngine(t, script).proxyFor(t, "http://x.example/"); got != "PROXY devbox.lan:80" {
		t.Errorf("a Host without port means port 80: %q", got)
	}

	// HTTP/1.0 without Host: the connection's own address.
	resp, _, _ := px.rawRequest("GET /proxy.pac HTTP/1.0\r\n\r\n")
	body := readBody(t, resp)
	if got := newPACEngine(t, body).proxyFor(t, "http://x.example/"); got != "PROXY "+px.addr {
		t.Errorf("without Host: %q", got)
	}
	resp, _, _ = px.rawRequest("POST /proxy.pac HTTP/1.1\r\nHost: " + px.addr + "\r\nContent-Length: 0\r\n\r\n")
	if readBody(t, resp); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /proxy.pac: %d", resp.StatusCode)
	}
}
