package proxytest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// What a host decides stays an option: the release the persona names
// (--persona-version) and squid's host name (--pseudonym, squid's
// visible_hostname), which names both Via and X-Cache.
func TestPersonaVersionAndHost(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Header.Get("Via")))
	}))
	defer origin.Close()
	px := proxytest.Start(t, proxytest.WithProfile("squid"), proxytest.WithConfig(func(c *config.Config) {
		c.PersonaVersion = "6.6"
		c.Pseudonym = "cache1.example"
	}))
	resp, err := px.Client().Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	via := make([]byte, 64)
	n, _ := resp.Body.Read(via)
	if got := string(via[:n]); got != "1.1 cache1.example (squid/6.6)" {
		t.Errorf("the origin saw Via %q", got)
	}
	if got := resp.Header.Get("X-Cache"); got != "MISS from cache1.example" {
		t.Errorf("X-Cache %q", got)
	}
	if got := resp.Header.Get("Via"); got != "1.1 cache1.example (squid/6.6)" {
		t.Errorf("answer Via %q", got)
	}
}
