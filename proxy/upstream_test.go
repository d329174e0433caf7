package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopscope/hopscope/proxy"
)

// Bodiless requests reuse one upstream connection.
func TestUpstreamConnectionsAreReused(t *testing.T) {
	var conns atomic.Int64
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	origin.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	origin.Start()
	defer origin.Close()
	px := startProxy(t, nil)
	c := px.client()
	for range 5 {
		resp, err := c.Get(origin.URL)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential GETs opened %d upstream connections, want 1", n)
	}
}

// An origin that closes a kept-alive connection while it is idle: the next
// GET is sent again on a fresh connection instead of failing.
func TestStaleUpstreamConnectionIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				// Keep-alive answer, then close anyway, as a server with a
				// short idle timeout does.
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
				served.Add(1)
			}()
		}
	}()
	px := startProxy(t, nil)
	c := px.client()
	for i := range 3 {
		resp, err := c.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, resp); resp.StatusCode != 200 || body != "fresh" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // let the origin's close arrive
	}
	if served.Load() != 3 {
		t.Errorf("origin served %d", served.Load())
	}
}

// Response headers beyond the limit are a 502, not unbounded memory.
func TestOversizedResponseHeaders(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 20000)+"\r\nContent-Length: 0\r\n\r\n")
	px := startProxy(t, &proxy.Options{MaxHeaderBytes: 8192})
	resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
	checkProxyAnswer(t, resp, http.StatusBadGateway, "")
}

// Informational answers before the real one are skipped.
func TestEarlyHintsSkipped(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "real" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
}

// A client that goes away mid-answer ends the upstream exchange too.
func TestClientGoneCancelsUpstream(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(1)
	ended := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer wg.Done()
		for {
			if _, err := io.WriteString(w, "tick\n"); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(ended)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		close(ended)
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET "+origin.URL+"/ HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the origin kept streaming after the client left")
	}
	wg.Wait()
	if e := px.waitEvent("http", nil); !strings.Contains(e.str("error"), "client went away") {
		t.Errorf("http event %v: the client left, the destination did not cut its answer", e)
	}
}
