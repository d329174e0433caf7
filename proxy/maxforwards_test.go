package proxy_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// RFC 9110 section 7.6.2: OPTIONS and TRACE with Max-Forwards: 0 are
// answered by the proxy itself; a larger value is decremented on the way.
func TestMaxForwards(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)

	resp, conn, _ := px.rawRequest("OPTIONS http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\nMax-Forwards: 0\r\n\r\n")
	conn.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Allow") == "" {
		t.Errorf("OPTIONS with Max-Forwards: 0: %s, Allow %q; want 200 with Allow from the proxy", resp.Status, resp.Header.Get("Allow"))
	}

	resp, conn, _ = px.rawRequest("TRACE http://" + up.addr() + "/t HTTP/1.1\r\nHost: " + up.addr() + "\r\nMax-Forwards: 0\r\nX-Probe: 1\r\n\r\n")
	body := readBody(t, resp)
	conn.Close()
	if resp.Header.Get("Content-Type") != "message/http" || !strings.HasPrefix(body, "TRACE /t HTTP/1.1\r\n") || !strings.Contains(body, "X-Probe: 1\r\n") {
		t.Errorf("TRACE with Max-Forwards: 0: %s %q, body %q; want the request echoed as message/http", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	resp, conn, _ = px.rawRequest("OPTIONS http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\nMax-Forwards: 2\r\n\r\n")
	readBody(t, resp)
	conn.Close()
	if got := up.lastHead(t); !slices.Contains(got, "Max-Forwards: 1") {
		t.Errorf("OPTIONS with Max-Forwards: 2 reached the destination as %q; want Max-Forwards: 1", got)
	}
	up.mu.Lock()
	n := len(up.heads)
	up.mu.Unlock()
	if n != 1 {
		t.Errorf("the destination received %d requests; the two with Max-Forwards: 0 must stop at the proxy", n)
	}
}
