package proxy_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hopscope/hopscope/proxy"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

// A client's hop-by-hop headers stop at the proxy; end-to-end headers pass
// unchanged (RFC 9110 section 7.6.1).
func TestRequestHopByHopHeaders(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)
	req := "GET http://" + up.addr() + "/path?q=1 HTTP/1.1\r\n" +
		"Host: " + up.addr() + "\r\n" +
		"Connection: keep-alive, X-Named-By-Connection\r\n" +
		"X-Named-By-Connection: secret\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
		"TE: trailers, deflate\r\n" +
		"Trailer: X-Checksum\r\n" +
		"Upgrade: h2c\r\n" +
		"Authorization: Bearer end-to-end\r\n" +
		"Accept-Encoding: gzip, br\r\n" +
		"Cookie: a=b\r\n" +
		"X-End-To-End: kept\r\n" +
		"\r\n"
	resp, _, _ := px.rawRequest(req)
	if got := readBody(t, resp); got != "ok" {
		t.Fatalf("body %q", got)
	}
	head := up.lastHead(t)
	cases := []struct {
		header string
		want   []string // nil: must be absent
	}{
		{"Connection", nil},
		{"X-Named-By-Connection", nil},
		{"Proxy-Connection", nil},
		{"Keep-Alive", nil},
		{"Proxy-Authorization", nil},
		{"Te", []string{"trailers"}},
		{"Trailer", nil},
		{"Upgrade", nil},
		{"Authorization", []string{"Bearer end-to-end"}},
		{"Accept-Encoding", []string{"gzip, br"}},
		{"Cookie", []string{"a=b"}},
		{"X-End-To-End", []string{"kept"}},
		{"Via", []string{"1.1 hopscope"}},
	}
	for _, tc := range cases {
		got := headerValues(head, tc.header)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("upstream saw %s = %q, want %q", tc.header, got, tc.want)
		}
	}
	if head[0] != "GET /path?q=1 HTTP/1.1" {
		t.Errorf("request line upstream = %q, want origin form", head[0])
	}
	checkGolden(t, "forward_request_head.golden", strings.ReplaceAll(strings.Join(head, "\n"), up.addr(), "UPSTREAM")+"\n")
}

// Go's HTTP client deletes a response's whole "Connection: close, X-Named"
// header, and with it the list of what to remove; the upstream client
// reads the raw head so X-Named stops at the proxy all the same.
func TestResponseConnectionCloseNamesHeaders(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 200 OK\r\nConnection: close, X-Named-With-Close\r\nX-Named-With-Close: secret\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
	readBody(t, resp)
	if v := resp.Header.Get("X-Named-With-Close"); v != "" {
		t.Errorf("a header named by Connection: close, X reached the client: %q", v)
	}
	if resp.Header.Get("X-Kept") != "1" {
		t.Error("an end-to-end header was lost")
	}
}

// The destination's hop-by-hop headers stop at the proxy too; goproxy
// removes nothing from responses on its own.
func TestResponseHopByHopHeaders(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 200 OK\r\n"+
		"Connection: X-Resp-Named\r\n"+
		"X-Resp-Named: secret\r\n"+
		"Keep-Alive: timeout=5, max=100\r\n"+
		"Proxy-Authenticate: Basic realm=upstream\r\n"+
		"Proxy-Connection: close\r\n"+
		"Upgrade: h2c\r\n"+
		"Set-Cookie: s=1\r\n"+
		"X-End-To-End: kept\r\n"+
		"Content-Length: 5\r\n"+
		"\r\nhello")
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
	if got := readBody(t, resp); got != "hello" {
		t.Fatalf("body %q", got)
	}
	for _, h := range []string{"X-Resp-Named", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade"} {
		if v := resp.Header.Values(h); len(v) > 0 {
			t.Errorf("client received hop-by-hop %s: %q", h, v)
		}
	}
	if v := resp.Header.Get("Connection"); v != "" && !strings.EqualFold(v, "keep-alive") {
		t.Errorf("client received the upstream's Connection header: %q", v)
	}
	for h, want := range map[string]string{"Set-Cookie": "s=1", "X-End-To-End": "kept", "Via": "1.1 hopscope"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("client received %s = %q, want %q", h, got, want)
		}
	}
}

func TestPseudonymInVia(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, &proxy.Options{Pseudonym: "corp-gw"})
	resp, err := px.client().Get("http://" + up.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if got := headerValues(up.lastHead(t), "Via"); len(got) != 1 || got[0] != "1.1 corp-gw" {
		t.Errorf("upstream Via = %q", got)
	}
	if got := resp.Header.Get("Via"); got != "1.1 corp-gw" {
		t.Errorf("client Via = %q", got)
	}
}

func TestForwardEvent(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	resp, err := px.client().Post(origin.URL+"/upload", "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != "got 1000" {
		t.Fatalf("body %q", got)
	}
	e := px.waitEvent("http", nil)
	checks := map[string]any{
		"method": "POST", "url": origin.URL + "/upload", "proto": "HTTP/1.1",
		"status": float64(200), "req_bytes": float64(1000), "resp_bytes": float64(len("got 1000")),
	}
	for k, want := range checks {
		if e[k] != want {
			t.Errorf("http event %s = %v, want %v", k, e[k], want)
		}
	}
	for _, k := range []string{"time", "level", "conn", "client", "duration_ms"} {
		if _, ok := e[k]; !ok {
			t.Errorf("http event lacks %s: %v", k, e)
		}
	}
}

// Bodies pass unchanged both ways: the client's Accept-Encoding reaches the
// origin and a compressed answer reaches the client still compressed.
func TestBodiesUnaltered(t *testing.T) {
	var compressed bytes.Buffer
	zw := gzip.NewWriter(&compressed)
	_, _ = zw.Write(bytes.Repeat([]byte("hopscope "), 1000))
	_ = zw.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("origin saw Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(compressed.Bytes())
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	req, _ := http.NewRequest("GET", origin.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := px.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != compressed.String() {
		t.Errorf("client got %d bytes, want the %d compressed bytes unchanged", len(got), compressed.Len())
	}
}

// A large upload and download stream through unchanged.
func TestLargeBodiesBothWays(t *testing.T) {
	const size = 8 << 20
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Upload-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Upload-Len", fmt.Sprint(n))
		_, _ = io.Copy(w, io.LimitReader(&patternReader{}, size))
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	resp, err := px.client().Post(origin.URL, "application/octet-stream", io.LimitReader(&patternReader{}, size))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(&patternReader{}, size))
	wantSum := fmt.Sprintf("%x", want.Sum(nil))
	if got := resp.Header.Get("X-Upload-Sum"); got != wantSum {
		t.Errorf("origin received a different upload: len %s", resp.Header.Get("X-Upload-Len"))
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || fmt.Sprintf("%x", got.Sum(nil)) != wantSum {
		t.Errorf("client received %d bytes (err %v), want %d identical bytes", n, err, size)
	}
}

// patternReader yields an endless byte pattern that depends on the
// position in the stream, so reordered or lost bytes change a checksum.
type patternReader struct{ off int }

func (r *patternReader) Read(p []byte) (int, error) {
	for i := range p {
		n := r.off + i
		p[i] = byte(n*7 + n/251)
	}
	r.off += len(p)
	return len(p), nil
}

// A chunked answer reaches the client chunk by chunk: the origin does not
// send the second chunk until the client has received the first.
func TestStreamingChunkedAnswer(t *testing.T) {
	for _, contentType := range []string{"application/x-ndjson", "text/event-stream"} {
		t.Run(contentType, func(t *testing.T) {
			firstSeen := make(chan struct{})
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", contentType)
				fmt.Fprintln(w, `{"n":1}`)
				w.(http.Flusher).Flush()
				select {
				case <-firstSeen:
				case <-r.Context().Done():
					return
				}
				fmt.Fprintln(w, `{"n":2}`)
			}))
			defer origin.Close()
			px := startProxy(t, nil)
			resp, err := px.client().Get(origin.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 64)
			n, err := resp.Body.Read(buf)
			if err != nil || string(buf[:n]) != "{\"n\":1}\n" {
				t.Fatalf("first read = %q, %v; the first chunk did not arrive on its own", buf[:n], err)
			}
			close(firstSeen)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "{\"n\":2}\n" {
				t.Fatalf("rest = %q, %v", rest, err)
			}
		})
	}
}

// Trailers announced by the origin reach the client.
func TestTrailersForwarded(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	resp, err := px.client().Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum = %q", got)
	}
}

// Requests addressed to the proxy itself get a page saying what it is.
func TestInfoPage(t *testing.T) {
	px := startProxy(t, nil)
	resp, err := http.Get("http://" + px.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "forward proxy") || !strings.Contains(body, "curl -x http://"+px.addr) {
		t.Errorf("info page: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + px.addr + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("other paths: status %d, want 404", resp.StatusCode)
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./proxy -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("%s differs from golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// An HTTP/1.0 client is answered and its Via entry says 1.0.
func TestHTTP10Client(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)
	resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/old HTTP/1.0\r\n\r\n")
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if via := headerValues(up.lastHead(t), "Via"); len(via) != 1 || via[0] != "1.0 hopscope" {
		t.Errorf("upstream Via %q", via)
	}
}
