package proxy_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// loopbackResolver answers A questions for names under .test with
// 127.0.0.1 and every other name with NXDOMAIN, in process (Go's resolver
// speaks DNS over TCP framing on a net.Pipe), so the proxy can reach names
// a browser test makes up, and nothing else, without any network.
func loopbackResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			for {
				var size [2]byte
				if _, err := io.ReadFull(server, size[:]); err != nil {
					return
				}
				query := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(server, query); err != nil {
					return
				}
				var p dnsmessage.Parser
				head, err := p.Start(query)
				if err != nil {
					return
				}
				q, err := p.Question()
				if err != nil {
					return
				}
				ours := strings.HasSuffix(strings.ToLower(q.Name.String()), ".test.")
				rcode := dnsmessage.RCodeSuccess
				if !ours {
					rcode = dnsmessage.RCodeNameError
				}
				b := dnsmessage.NewBuilder(make([]byte, 2, 514), dnsmessage.Header{ID: head.ID, Response: true, Authoritative: true, RCode: rcode})
				_ = b.StartQuestions()
				_ = b.Question(q)
				_ = b.StartAnswers()
				if ours && q.Type == dnsmessage.TypeA {
					_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
				}
				msg, err := b.Finish()
				if err != nil {
					return
				}
				binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
				if _, err := server.Write(msg); err != nil {
					return
				}
			}
		}()
		return client, nil
	}}
}

// Chromium configured with hopscope's PAC URL alone sends a name the PAC
// proxies through hopscope and a --no-proxy name DIRECT.
func TestChromiumFollowsThePAC(t *testing.T) {
	chromium := chromiumPath(t)
	type seen struct{ host, via string }
	var mu sync.Mutex
	var requests []seen
	done := make(chan struct{})
	var once sync.Once
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, seen{r.Host, r.Header.Get("Via")})
		mu.Unlock()
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, port, _ := net.SplitHostPort(r.Host)
			_, _ = io.WriteString(w, `<!doctype html><title>pac</title><img src="http://direct.test:`+port+`/pixel">`)
		case "/pixel":
			once.Do(func() { close(done) })
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	// Chromium's background requests come through the proxy too: only
	// .test names are allowed and resolved (in process), so nothing
	// leaves the machine.
	pol := openPolicy()
	pol.Allow = []policy.HostPattern{mustPattern(t, "*.test")}
	px := startProxy(t, &proxy.Options{Policy: pol, Resolver: loopbackResolver(),
		NoProxy: []policy.HostPattern{mustPattern(t, "direct.test")}})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		"--proxy-pac-url=http://"+px.addr+"/proxy.pac",
		// For the name the PAC sends DIRECT; the proxied one is resolved
		// by hopscope.
		"--host-resolver-rules=MAP direct.test 127.0.0.1",
		"http://via.test:"+port+"/")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("Chromium did not load both; origin saw %v; proxy log:\n%s", requests, px.logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		name, _, _ := net.SplitHostPort(r.host)
		switch {
		case name == "via.test" && !strings.Contains(r.via, "hopscope"):
			t.Errorf("via.test reached the origin without hopscope (Via %q)", r.via)
		case name == "direct.test" && r.via != "":
			t.Errorf("direct.test, which the PAC sends DIRECT, came through a proxy (Via %q)", r.via)
		}
	}
	if e := px.waitEvent("http", func(e event) bool { return strings.HasPrefix(e.str("url"), "http://via.test:") }); e.num("status") != 200 {
		t.Errorf("http event %v", e)
	}
}
