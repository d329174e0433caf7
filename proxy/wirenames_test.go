package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hopscope/hopscope/proxy"
)

// Header names reach the destination with the client's case and in the
// client's order, and the answer reaches the client with the
// destination's case, on every connection of a keep-alive client: net/http
// alone would write Sec-Websocket-Key, sorted.
func TestHeaderCaseAndOrderKept(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 200 OK\r\nx-lower-case: 1\r\nSec-WebSocket-Accept: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	px := startProxy(t, nil)
	head := "Host: " + up.addr() + "\r\nzz-last-alphabetically: 1\r\nSec-WebSocket-Key: k\r\nX-UPPER: u\r\naa-first: 2\r\n"
	raw := "GET http://" + up.addr() + "/one HTTP/1.1\r\n" + head + "Content-Length: 3\r\n\r\nabc" +
		"GET http://" + up.addr() + "/two HTTP/1.1\r\n" + head + "\r\n"
	resp, conn, br := px.rawRequest(raw)
	defer conn.Close()
	if got := readBody(t, resp); got != "ok" {
		t.Fatalf("body %q", got)
	}
	// The second answer is read raw: http.ReadResponse canonicalises too.
	var answer []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("second answer on the kept-alive connection: %v", err)
		}
		if line = strings.TrimRight(line, "\r\n"); line == "" {
			break
		}
		answer = append(answer, line)
	}
	got := up.lastHead(t)
	want := []string{
		"GET /two HTTP/1.1",
		"Host: UPSTREAM",
		"zz-last-alphabetically: 1",
		"Sec-WebSocket-Key: k",
		"X-UPPER: u",
		"aa-first: 2",
		"Via: 1.1 hopscope",
	}
	if g := strings.ReplaceAll(strings.Join(got, "\n"), up.addr(), "UPSTREAM"); g != strings.Join(want, "\n") {
		t.Errorf("the destination saw:\n%s\nwant:\n%s", g, strings.Join(want, "\n"))
	}
	for _, field := range []string{"x-lower-case: 1", "Sec-WebSocket-Accept: 2"} {
		if !slices.Contains(answer, field) {
			t.Errorf("answer lacks %q as the destination wrote it:\n%s", field, strings.Join(answer, "\n"))
		}
	}
}

// A WebSocket handshake relayed frame by frame keeps the names too, both
// ways: Sec-WebSocket-Key reaches the server, Sec-WebSocket-Accept the
// client, as they were written.
func TestWebSocketHandshakeNamesKept(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
	px := startProxy(t, nil)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "GET http://"+up.addr()+"/ws HTTP/1.1\r\nHost: "+up.addr()+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var answer []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the 101: %v (so far %q)", err, answer)
		}
		if line = strings.TrimRight(line, "\r\n"); line == "" {
			break
		}
		answer = append(answer, line)
	}
	if !slices.Contains(answer, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
		t.Errorf("the client's 101 lacks Sec-WebSocket-Accept as the server wrote it:\n%s", strings.Join(answer, "\n"))
	}
	head := up.lastHead(t)
	for _, want := range []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"} {
		if !slices.Contains(head, want) {
			t.Errorf("the server's handshake lacks %q:\n%s", want, strings.Join(head, "\n"))
		}
	}
}

// A head over --max-header-bytes gets hopscope's own 431, which says
// which limit it passed, and the connection is closed.
func TestLargeHeadRefusedWithReason(t *testing.T) {
	px := startProxy(t, &proxy.Options{MaxHeaderBytes: 4096})
	resp, conn, br := px.rawRequest("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n")
	defer conn.Close()
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(body, "--max-header-bytes") {
		t.Fatalf("%s %q; want 431 naming --max-header-bytes", resp.Status, body)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection stayed open after the 431")
	}
}
