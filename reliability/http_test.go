package reliability

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopscope/hopscope/config"
)

// Smuggling and framing: no request hidden in or behind another reaches
// the origin, a broken body is the client's 400, and the connection ends.
func TestSmugglingAndFraming(t *testing.T) {
	noLeaks(t)
	origin := startOrigin(t, answer(okAnswer))
	// An origin that reads each body whole before it answers, so that a
	// broken body is found before any answer.
	var readerPaths []string
	var mu sync.Mutex
	reader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		readerPaths = append(readerPaths, r.URL.Path)
		mu.Unlock()
		if _, err := io.ReadAll(r.Body); err == nil {
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer reader.Close()
	px := start(t, nil)
	a := origin.addr()
	post := "POST http://" + a + "/ HTTP/1.1\r\nHost: " + a + "\r\n"
	hidden := "GET http://" + a + "/hidden HTTP/1.1\r\nHost: " + a + "\r\n\r\n"
	ra := strings.TrimPrefix(reader.URL, "http://")
	postChunked := "POST http://" + ra + "/ HTTP/1.1\r\nHost: " + ra + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	readerHidden := "GET http://" + ra + "/hidden HTTP/1.1\r\nHost: " + ra + "\r\n\r\n"
	cases := []struct {
		name, raw string
		status    int
		errType   string
		says      string
	}{
		{"CL and TE, request behind the body", post + "Content-Length: " + strconv.Itoa(5+len(hidden)) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, 200, "", "ok"},
		{"TE and CL, request behind the body", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + hidden, 200, "", "ok"},
		{"two Content-Lengths", post + "Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + hidden, 400, "", ""},
		{"Transfer-Encoding not chunked last", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + hidden, 501, "", ""},
		{"chunk size not hex", postChunked + "xyz\r\n" + readerHidden, 400, "http_request_error", "request body is malformed"},
		{"chunk size overflow", postChunked + "10000000000000000\r\n" + readerHidden, 400, "http_request_error", "request body is malformed"},
		{"chunk extension of 1 MiB", postChunked + "1;" + strings.Repeat("e", 1<<20) + "\r\na\r\n0\r\n\r\n", 400, "http_request_error", "request body is malformed"},
		{"chunk longer than its size", postChunked + "1\r\nabc\r\n0\r\n\r\n" + readerHidden, 400, "http_request_error", "request body is malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, px)
			resp := c.send(t, tc.raw)
			if tc.status == 200 {
				if b := body(t, resp); resp.StatusCode != 200 || b != tc.says {
					t.Fatalf("got %d %q", resp.StatusCode, b)
				}
			} else {
				refusal(t, resp, tc.status, tc.errType, tc.says)
			}
			c.closed(t)
		})
	}
	t.Run("userinfo in the target", func(t *testing.T) {
		c := dialRaw(t, px)
		refusal(t, c.send(t, "GET http://user:pw@"+a+"/ HTTP/1.1\r\nHost: "+a+"\r\n\r\n"), 400, "http_request_error", "credentials")
	})
	mu.Lock()
	if slices.Contains(readerPaths, "/hidden") {
		t.Errorf("a hidden request reached the origin: %q", readerPaths)
	}
	mu.Unlock()
	for _, head := range origin.received() {
		if strings.Contains(head, "/hidden") {
			t.Errorf("a hidden request reached the origin:\n%s", head)
		}
		if strings.Contains(head, "Content-Length") && strings.Contains(head, "Transfer-Encoding") {
			t.Errorf("the origin received both framings:\n%s", head)
		}
	}
}

// Oversized and malformed heads get a clear 4xx and a closed connection,
// and nothing reaches the origin.
func TestMalformedHeads(t *testing.T) {
	noLeaks(t)
	origin := startOrigin(t, answer(okAnswer))
	px := start(t, nil)
	a := origin.addr()
	get := "GET http://" + a + "/ HTTP/1.1\r\n"
	cases := []struct {
		name, raw string
		status    int
	}{
		{"headers over --max-header-bytes", get + "Host: " + a + "\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\n\r\n", 431},
		{"request line over the limit", "GET http://" + a + "/" + strings.Repeat("p", 16<<10) + " HTTP/1.1\r\nHost: " + a + "\r\n\r\n", 431},
		{"garbage", "\x16\x03\x01\x02\x00garbage\r\n\r\n", 400},
		{"bad version", "GET http://" + a + "/ HTTP/7.0\r\nHost: " + a + "\r\n\r\n", 505},
		{"NUL in a value", get + "Host: " + a + "\r\nX-A: a\x00b\r\n\r\n", 400},
		{"bare CR in a value", get + "Host: " + a + "\r\nX-A: a\rb\r\n\r\n", 400},
		{"two Hosts", get + "Host: " + a + "\r\nHost: other.example\r\n\r\n", 400},
		{"no Host", get + "\r\n", 400},
		{"space before the colon", get + "Host: " + a + "\r\nX-A : 1\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, px)
			refusal(t, c.send(t, tc.raw), tc.status, "")
			c.closed(t)
		})
	}
	if got := origin.received(); len(got) != 0 {
		t.Errorf("the origin received %q", got)
	}
}

// Slowloris: a client that sends its head or its body a little at a time
// and then stops is cut off; an honest client is served meanwhile.
func TestSlowloris(t *testing.T) {
	noLeaks(t)
	origin := startOrigin(t, answer(okAnswer))
	px := start(t, nil)
	a := origin.addr()
	t.Run("head", func(t *testing.T) {
		var conns []*rawConn
		for range 20 {
			c := dialRaw(t, px)
			_, _ = io.WriteString(c, "GET http://"+a+"/ HTTP/1.1\r\nHost: ")
			conns = append(conns, c)
		}
		honest := dialRaw(t, px)
		if resp := honest.send(t, "GET http://"+a+"/ HTTP/1.1\r\nHost: "+a+"\r\n\r\n"); body(t, resp) != "ok" {
			t.Error("an honest client was not served beside the slow ones")
		}
		for _, c := range conns {
			c.closed(t) // after --read-header-timeout
		}
	})
	t.Run("body", func(t *testing.T) {
		c := dialRaw(t, px)
		resp := c.send(t, "POST http://"+a+"/ HTTP/1.1\r\nHost: "+a+"\r\nContent-Length: 100\r\n\r\nonly a little")
		refusal(t, resp, http.StatusRequestTimeout, "http_request_error", "no request body bytes")
		c.closed(t)
	})
}

// CONNECT abuse: bad targets, refused ports, closed ports, CONNECT inside a
// tunnel, tunnels opened and dropped, each answered or ended cleanly.
func TestConnectAbuse(t *testing.T) {
	noLeaks(t)
	origin := startOrigin(t, answer(okAnswer))
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	px := start(t, func(c *config.Config) { c.ConnectPorts = "1-65535" })
	strict := start(t, func(c *config.Config) { c.ConnectPorts = "443" })
	cases := []struct {
		name, raw string
		strict    bool
		status    int
		errType   string
	}{
		{"no port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", false, 400, "http_request_error"},
		{"a URL", "CONNECT http://" + origin.addr() + "/ HTTP/1.1\r\nHost: x\r\n\r\n", false, 400, "http_request_error"},
		{"port out of range", "CONNECT 127.0.0.1:70000 HTTP/1.1\r\nHost: x\r\n\r\n", false, 400, "http_request_error"},
		{"port not allowed", "CONNECT " + origin.addr() + " HTTP/1.1\r\nHost: x\r\n\r\n", true, 403, "http_request_denied"},
		{"closed port", "CONNECT " + closedAddr + " HTTP/1.1\r\nHost: x\r\n\r\n", false, 502, "connection_refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := px
			if tc.strict {
				p = strict
			}
			c := dialRaw(t, p)
			refusal(t, c.send(t, tc.raw), tc.status, tc.errType)
			c.closed(t)
		})
	}
	t.Run("CONNECT inside a tunnel", func(t *testing.T) {
		c := dialRaw(t, px)
		if resp := c.send(t, "CONNECT "+origin.addr()+" HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		refusal(t, c.send(t, "CONNECT "+origin.addr()+" HTTP/1.1\r\nHost: "+origin.addr()+"\r\n\r\n"), 405, "http_request_error", "inside a tunnel")
	})
	t.Run("tunnels opened and dropped", func(t *testing.T) {
		for range 50 {
			c := dialRaw(t, px)
			_, _ = io.WriteString(c, "CONNECT "+origin.addr()+" HTTP/1.1\r\nHost: x\r\n\r\n")
			c.Close()
		}
		c := dialRaw(t, px)
		if resp := c.send(t, "GET http://"+origin.addr()+"/ HTTP/1.1\r\nHost: "+origin.addr()+"\r\n\r\n"); body(t, resp) != "ok" {
			t.Error("the proxy does not serve after 50 dropped tunnels")
		}
	})
}

// Upstream faults: the client hears what went wrong, with the origin
// named, and nothing is left open.
func TestUpstreamFaults(t *testing.T) {
	noLeaks(t)
	resetMidBody := startOrigin(t, func(conn net.Conn, _ *bufio.Reader, _ string) {
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
		time.Sleep(50 * time.Millisecond)
		_ = conn.(*net.TCPConn).SetLinger(0)
	})
	silent := startOrigin(t, func(conn net.Conn, r *bufio.Reader, _ string) {
		_, _ = io.Copy(io.Discard, r) // reads, never answers, until hopscope gives up
	})
	empty := startOrigin(t, func(net.Conn, *bufio.Reader, string) {})
	garbage := startOrigin(t, func(conn net.Conn, _ *bufio.Reader, _ string) {
		_, _ = io.WriteString(conn, "SSH-2.0-OpenSSH_9.6\r\n")
	})
	px := start(t, nil)
	get := func(a string) string { return "GET http://" + a + "/ HTTP/1.1\r\nHost: " + a + "\r\n\r\n" }
	t.Run("reset mid-body", func(t *testing.T) {
		c := dialRaw(t, px)
		resp := c.send(t, get(resetMidBody.addr()))
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %d, %q, %v; want the body cut short, not ended as if complete", resp.StatusCode, b, err)
		}
		c.closed(t)
	})
	t.Run("silent upstream", func(t *testing.T) {
		c := dialRaw(t, px)
		refusal(t, c.send(t, get(silent.addr())), http.StatusGatewayTimeout, "", silent.addr())
	})
	t.Run("empty reply", func(t *testing.T) {
		c := dialRaw(t, px)
		refusal(t, c.send(t, get(empty.addr())), http.StatusBadGateway, "", empty.addr())
	})
	t.Run("not HTTP", func(t *testing.T) {
		c := dialRaw(t, px)
		refusal(t, c.send(t, get(garbage.addr())), http.StatusBadGateway, "", garbage.addr())
	})
}
