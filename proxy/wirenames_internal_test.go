package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// The tap follows Content-Length bodies and gives up, rather than
// guessing, on framing it cannot follow.
func TestHeadTapFraming(t *testing.T) {
	tap := &headTap{limit: 1 << 10}
	tap.feed([]byte("POST /a HTTP/1.1\r\nA-b: 1\r\nContent-Length: 4\r\n\r\nbodyGET /b HTTP/1.1\r\nc-D: 2\r\n"))
	tap.feed([]byte("\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nGET /d HTTP/1.1\r\n\r\n"))
	for _, want := range []struct {
		method, target, names string
		size                  int
	}{
		{"POST", "/a", "A-b,Content-Length", 47},
		{"GET", "/b", "c-D", 27},
		{"POST", "/c", "Transfer-Encoding", 48},
	} {
		h := tap.claim(&http.Request{Method: want.method, RequestURI: want.target})
		if strings.Join(h.names, ",") != want.names || h.size != want.size {
			t.Errorf("%s %s: names %q in %d bytes, want %q in %d", want.method, want.target, h.names, h.size, want.names, want.size)
		}
	}
	if h := tap.claim(&http.Request{Method: "GET", RequestURI: "/d"}); h.names != nil {
		t.Errorf("after a chunked body the tap claimed %q; it cannot know where the next head starts", h.names)
	}
}

func TestStripTargetSpaces(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{"GET http://a/b c HTTP/1.1", "GET http://a/bc HTTP/1.1", true},
		{"GET /a b  c HTTP/1.0", "GET /abc HTTP/1.0", true},
		{"GET /a HTTP/1.1", "", false},
		{"GARBAGE", "", false},
		{"GET /a b NOTHTTP", "", false},
	} {
		got, ok := stripTargetSpaces(tc.line)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("stripTargetSpaces(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
