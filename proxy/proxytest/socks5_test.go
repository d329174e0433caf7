package proxytest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// WithSOCKS5: an app's SOCKS5 client (here net/http's socks5h://) goes
// through the same proxy, with the same credentials, and its tunnel is a
// flow record like a CONNECT's.
func TestSOCKS5(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "via socks")
	}))
	defer origin.Close()
	px := proxytest.Start(t, proxytest.WithSOCKS5(), proxytest.WithAuth("app", "pw"))
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5h", Host: px.SOCKS5Addr(), User: url.UserPassword("app", "pw")})}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(origin.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "via socks" {
		t.Fatalf("body %q", body)
	}
	x := px.WaitFor(t, proxytest.IsExchange("GET", origin.URL+"/x"), 10*time.Second).Exchange
	if x.Tunnel == 0 {
		t.Errorf("the exchange names no tunnel: %+v", x)
	}
	tr.CloseIdleConnections()
	tun := px.WaitFor(t, func(r flow.Record) bool { return r.Kind == flow.KindTunnel && r.Tunnel.ID == x.Tunnel }, 10*time.Second).Tunnel
	if tun.Via != "socks5" || tun.Mode != "http" {
		t.Errorf("tunnel %+v", tun)
	}
}
