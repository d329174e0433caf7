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
	for _, want := range []struct{ method, target, names string }{
		{"POST", "/a", "A-b,Content-Length"},
		{"GET", "/b", "c-D"},
		{"POST", "/c", "Transfer-Encoding"},
	} {
		names := tap.claim(&http.Request{Method: want.method, RequestURI: want.target})
		if strings.Join(names, ",") != want.names {
			t.Errorf("%s %s: names %q, want %q", want.method, want.target, names, want.names)
		}
	}
	if names := tap.claim(&http.Request{Method: "GET", RequestURI: "/d"}); names != nil {
		t.Errorf("after a chunked body the tap claimed %q; it cannot know where the next head starts", names)
	}
}
