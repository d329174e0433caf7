package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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
