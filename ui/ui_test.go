package ui

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/hopscope/hopscope/flow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "test-token-0123456789"

func newTestUI(t *testing.T, src Source, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	opts.Source = src
	if opts.Token == "" {
		opts.Token = testToken
	}
	opts.Hosts = append(opts.Hosts, "hopscope.ui")
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts
}

func get(t *testing.T, c *http.Client, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The guards a browser meets: token, Host, Origin, Sec-Fetch-Site.
func TestUIRefusesWhatItMust(t *testing.T) {
	_, ts := newTestUI(t, newFakeSource(), Options{})
	auth := "Bearer " + testToken
	cases := []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
	}{
		{"no token", "/api/flows", nil, http.StatusUnauthorized},
		{"no token page", "/", nil, http.StatusUnauthorized},
		{"wrong token", "/api/flows", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"wrong token in URL", "/?token=nope", nil, http.StatusUnauthorized},
		{"bearer token", "/api/flows", map[string]string{"Authorization": auth}, http.StatusOK},
		{"rebound host", "/api/flows", map[string]string{"Authorization": auth, "Host": "evil.example:8081"}, http.StatusMisdirectedRequest},
		{"rebound host with the token in the URL", "/?token=" + testToken, map[string]string{"Host": "attacker.test"}, http.StatusMisdirectedRequest},
		{"magic host", "/api/flows", map[string]string{"Authorization": auth, "Host": "hopscope.ui"}, http.StatusOK},
		{"localhost", "/api/flows", map[string]string{"Authorization": auth, "Host": "localhost:8081"}, http.StatusOK},
		{"ipv6 loopback", "/api/flows", map[string]string{"Authorization": auth, "Host": "[::1]:8081"}, http.StatusOK},
		{"non-loopback IP", "/api/flows", map[string]string{"Authorization": auth, "Host": "192.0.2.7:8081"}, http.StatusMisdirectedRequest},
		{"cross-site origin", "/api/flows", map[string]string{"Authorization": auth, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", "/api/flows", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site other port", "/api/flows", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, body := get(t, c, ts.URL+tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if resp.StatusCode >= 400 && strings.Contains(body, `"flows"`) {
				t.Fatalf("a refusal leaked the flow list: %s", body)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Fatalf("no CSP against framing: %q", csp)
			}
		})
	}
}

// Opening the printed URL sets a cookie and drops the token from the
// address bar; the page and the API then work with the cookie alone.
func TestUITokenBecomesACookie(t *testing.T) {
	s, ts := newTestUI(t, newFakeSource(), Options{})
	jar, _ := cookiejar.New(nil)
	var redirected []string
	c := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		redirected = append(redirected, r.URL.String())
		return nil
	}}
	resp, body := get(t, c, s.URL(ts.URL), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<title>hopscope</title>") {
		t.Fatalf("the printed URL gave %d: %.200s", resp.StatusCode, body)
	}
	if len(redirected) != 1 || strings.Contains(redirected[0], "token") {
		t.Fatalf("redirects %v: the token must leave the URL", redirected)
	}
	u, _ := url.Parse(ts.URL)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != cookieName {
		t.Fatalf("cookies %v", cookies)
	}
	for _, h := range []string{"app.js", "app.css"} {
		resp, _ := get(t, c, ts.URL+"/"+h, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/%s with the cookie: %d", h, resp.StatusCode)
		}
	}
	resp, _ = get(t, c, ts.URL+"/api/flows", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API with the cookie: %d", resp.StatusCode)
	}
}

func TestUIBasicAuthOnTopOfTheToken(t *testing.T) {
	_, ts := newTestUI(t, newFakeSource(), Options{User: "alice", Password: "s3cret"})
	c := http.DefaultClient
	resp, _ := get(t, c, ts.URL+"/api/flows", map[string]string{"Authorization": "Bearer " + testToken})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("without credentials: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/?token="+testToken, nil)
	req.SetBasicAuth("alice", "wrong")
	r2, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r2.StatusCode)
	}
	req.SetBasicAuth("alice", "s3cret")
	r3, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != http.StatusSeeOther {
		t.Fatalf("right password and token: %d, want the cookie redirect", r3.StatusCode)
	}
}

func bearer() map[string]string { return map[string]string{"Authorization": "Bearer " + testToken} }

func compress(t *testing.T, enc string, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	case "zstd":
		zw, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Bodies are shown decoded whatever the Content-Encoding, and a cut-short
// body shows what there is.
func TestUIBodiesAreDecodedForViewing(t *testing.T) {
	src := newFakeSource()
	plain := []byte(`{"hello":"world","n":[1,2,3]}` + strings.Repeat(" ", 2000))
	for i, enc := range []string{"gzip", "deflate", "br", "zstd", "gzip, br"} {
		data := plain
		for _, e := range strings.Split(enc, ", ") {
			data = compress(t, e, data)
		}
		hdr := http.Header{"Content-Encoding": {enc}, "Content-Type": {"application/json"}}
		src.add(Flow{ID: flow.ID(i + 1), Exchange: &flow.Exchange{ID: flow.ID(i + 1), Method: "GET", URL: "http://example.test/" + enc,
			Status: 200, ResponseHeader: hdr, ResponseBody: flow.Body{Data: data, Len: int64(len(data))}}})
	}
	cut := compress(t, "gzip", bytes.Repeat([]byte("abcdefgh"), 10000))
	src.add(Flow{ID: 9, Exchange: &flow.Exchange{ID: 9, Method: "GET", URL: "http://example.test/cut", Status: 200,
		ResponseHeader: http.Header{"Content-Encoding": {"gzip"}}, ResponseBody: flow.Body{Data: cut[:len(cut)/2], Len: int64(len(cut)), Truncated: true}}})
	_, ts := newTestUI(t, src, Options{})
	for i, enc := range []string{"gzip", "deflate", "br", "zstd", "gzip, br"} {
		resp, body := get(t, http.DefaultClient, ts.URL+"/api/flows/"+strconv.Itoa(i+1)+"/body/response", bearer())
		if resp.StatusCode != 200 || body != string(plain) || resp.Header.Get("X-Hopscope-Decoded") != enc {
			t.Errorf("%s: %d decoded=%q body %.60q", enc, resp.StatusCode, resp.Header.Get("X-Hopscope-Decoded"), body)
		}
	}
	resp, body := get(t, http.DefaultClient, ts.URL+"/api/flows/9/body/response", bearer())
	if resp.Header.Get("X-Hopscope-Truncated") != "1" || !strings.HasPrefix(body, "abcdefgh") {
		t.Errorf("cut body: truncated=%q body %.40q", resp.Header.Get("X-Hopscope-Truncated"), body)
	}
	resp, body = get(t, http.DefaultClient, ts.URL+"/api/flows/1/body/response?decode=0&download=1", bearer())
	if !strings.Contains(resp.Header.Get("Content-Disposition"), `flow1-response.json`) || body == string(plain) {
		t.Errorf("download: %q, raw body expected", resp.Header.Get("Content-Disposition"))
	}
}

// A tunnel's note says what became of it: one that never opened (its
// destination did not resolve) was not "spliced byte for byte".
func TestUITunnelNoteSaysWhatHappened(t *testing.T) {
	src := newFakeSource()
	src.add(Flow{ID: 1, Tunnel: &flow.Tunnel{ID: 1, Host: "nowhere.test", Port: 443, Mode: "splice", Status: 502, Error: "hopscope could not resolve the host nowhere.test"}})
	src.add(Flow{ID: 2, Tunnel: &flow.Tunnel{ID: 2, Host: "pinned.test", Port: 443, Mode: "splice", Status: 200, BytesUp: 10, BytesDown: 20}})
	src.add(Flow{ID: 3, Tunnel: &flow.Tunnel{ID: 3, Host: "shop.test", Port: 443, Mode: "bump", Status: 200, SNI: "shop.test"}})
	_, ts := newTestUI(t, src, Options{})
	resp, body := get(t, http.DefaultClient, ts.URL+"/api/flows", bearer())
	var list struct {
		Flows []struct {
			ID    string `json:"id"`
			Note  string `json:"note"`
			Error string `json:"error"`
		} `json:"flows"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 || len(list.Flows) != 3 {
		t.Fatalf("list: %d %v %s", resp.StatusCode, err, body)
	}
	want := map[string]string{"1": "not opened", "2": "spliced byte for byte", "3": "bumped (TLS opened with the local CA), SNI shop.test"}
	for _, f := range list.Flows {
		if f.Note != want[f.ID] {
			t.Errorf("tunnel %s: note %q, want %q", f.ID, f.Note, want[f.ID])
		}
	}
}

// A session's note counts what was done to its messages without saying a
// rule did it: a fault or a person may have.
func TestUISessionNoteCountsActionsWithoutBlamingRules(t *testing.T) {
	src := newFakeSource()
	sampleFlows(src) // session 6: one message dropped by a rule, one rewritten, and a ws-drop fault
	for i := range src.flows {
		if src.flows[i].ID == 6 {
			src.flows[i].Messages.Dropped, src.flows[i].Messages.Rewritten = 1, 1
		}
	}
	_, ts := newTestUI(t, src, Options{})
	_, body := get(t, http.DefaultClient, ts.URL+"/api/flows", bearer())
	var list struct {
		Flows []struct {
			ID   string `json:"id"`
			Note string `json:"note"`
		} `json:"flows"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	for _, f := range list.Flows {
		if f.ID == "6" && (f.Note != "forward path, 1 dropped, 1 rewritten" || strings.Contains(f.Note, "rules")) {
			t.Errorf("session note %q", f.Note)
		}
	}
}

func TestUIDetailMarksHopByHopHeaders(t *testing.T) {
	src := newFakeSource()
	src.add(Flow{ID: 1, Exchange: &flow.Exchange{ID: 1, Method: "GET", URL: "http://example.test/a", Status: 200,
		RequestHeader:  http.Header{"Connection": {"keep-alive, X-Trace"}, "X-Trace": {"1"}, "Accept": {"*/*"}, "Proxy-Authorization": {"Basic eA=="}},
		ResponseHeader: http.Header{"Transfer-Encoding": {"chunked"}, "Content-Type": {"text/plain"}}}})
	_, ts := newTestUI(t, src, Options{})
	_, body := get(t, http.DefaultClient, ts.URL+"/api/flows/1", bearer())
	var d Detail
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err, body)
	}
	hop := map[string]bool{}
	for _, h := range append(d.RequestHeaders, d.ResponseHeaders...) {
		hop[h.Name] = h.HopByHop
	}
	want := map[string]bool{"Connection": true, "X-Trace": true, "Accept": false, "Proxy-Authorization": true, "Transfer-Encoding": true, "Content-Type": false}
	for k, v := range want {
		if hop[k] != v {
			t.Errorf("%s: hop-by-hop %v, want %v", k, hop[k], v)
		}
	}
}

// The event stream carries new flows and messages as they happen.
func TestUIEventStreamFollowsTheStore(t *testing.T) {
	src := newFakeSource()
	_, ts := newTestUI(t, src, Options{})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		ev := ""
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				ev = e
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				events <- ev + " " + d
			}
		}
		close(events)
	}()
	// The subscription is made when the stream starts; wait for it.
	waitFor(t, func() bool { src.mu.Lock(); defer src.mu.Unlock(); return len(src.subs) == 1 })
	src.add(Flow{ID: 7, Open: true, Session: &flow.WSSession{ID: 7, URL: "http://chat.test/ws", Path: "forward"}})
	src.addMessage(7, Message{From: "client", Type: "text", Opcode: 1, Len: 5, Payload: []byte("hello"), Action: "pass"})
	var sawFlow, sawMsg bool
	timeout := time.After(10 * time.Second)
	for !sawFlow || !sawMsg {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.HasPrefix(e, "flow ") && strings.Contains(e, `"type":"websocket"`) {
				sawFlow = true
			}
			if strings.HasPrefix(e, "message ") && strings.Contains(e, `"preview":"hello"`) {
				if !sawFlow {
					t.Fatal("a message came before its flow")
				}
				sawMsg = true
			}
		case <-timeout:
			t.Fatalf("flow %v message %v", sawFlow, sawMsg)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}

// A long session opens at its newest messages; the rest are there to ask
// for.
func TestUIMessagesTail(t *testing.T) {
	src := newFakeSource()
	src.add(Flow{ID: 3, Session: &flow.WSSession{ID: 3, URL: "http://chat.test/"}})
	for i := 0; i < 50; i++ {
		src.addMessage(3, Message{From: "client", Type: "text", Opcode: 1, Payload: []byte("m" + strconv.Itoa(i+1)), Action: "pass"})
	}
	_, ts := newTestUI(t, src, Options{})
	for _, tc := range []struct {
		query      string
		n          int
		first, pre string
	}{{"?tail=10", 10, "41", "m41"}, {"", 50, "1", "m1"}, {"?tail=100", 50, "1", "m1"}} {
		_, body := get(t, http.DefaultClient, ts.URL+"/api/flows/3/messages"+tc.query, bearer())
		var out struct{ Messages []MessageJSON }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) != tc.n || strconv.FormatUint(out.Messages[0].Seq, 10) != tc.first || out.Messages[0].Preview != tc.pre {
			t.Errorf("%q: %d messages from %+v", tc.query, len(out.Messages), out.Messages[0])
		}
	}
}
