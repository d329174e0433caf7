package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/policy"
)

// Idle upstream connections are closed after the idle timeout even when
// their host is never visited again.
func TestIdleUpstreamConnectionsAreSwept(t *testing.T) {
	var closed atomic.Int64
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	origin.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	origin.Start()
	defer origin.Close()
	srv, err := New(nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv.upstream.idleTimeout = 50 * time.Millisecond
	u, _ := url.Parse(origin.URL)
	host := u.Hostname()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, origin.URL, nil)
	req = req.WithContext(withExchange(req.Context(), &exchange{target: forwardTarget(t, host, u.Port())}))
	resp, err := srv.upstream.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if closed.Load() != 1 {
		t.Fatal("the idle upstream connection was never closed")
	}
	srv.upstream.closeIdle()
}

func forwardTarget(t *testing.T, host, port string) policy.Request {
	t.Helper()
	h, p, err := policy.SplitHostPort(net.JoinHostPort(host, port))
	if err != nil {
		t.Fatal(err)
	}
	return policy.Request{Kind: policy.Forward, Host: h, Port: p}
}

func TestConnectionNames(t *testing.T) {
	head := []byte("HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nconnection: x-b ,  close\r\nX-Connection: X-C\r\n\r\nConnection: X-Body\r\n")
	got := connectionNames(head)
	if len(got) != 2 || got[0] != "X-A" || got[1] != "x-b" {
		t.Errorf("connectionNames = %q, want X-A and x-b (not close, not other headers, not the body)", got)
	}
}

// FuzzConnectionNames: any head parses without a panic, and close is
// never reported as a header to remove.
func FuzzConnectionNames(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: close, X-A\r\n\r\n"))
	f.Add([]byte("Connection:\r\nConnection: ,,,\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		for _, name := range connectionNames(head) {
			if name == "" || strings.EqualFold(name, "close") {
				t.Fatalf("reported %q", name)
			}
		}
	})
}
