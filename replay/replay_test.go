package replay_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/proxy/proxytest"
	"github.com/hopscope/hopscope/replay"
	"github.com/hopscope/hopscope/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// origin is a live server (gobwas/ws): it greets a WebSocket client,
// answers each message with prefix and the message, and serves /api/info.
type origin struct {
	prefix string
	wg     sync.WaitGroup
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/info" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":3}`)
		return
	}
	o.wg.Add(1)
	defer o.wg.Done()
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	if err := wsutil.WriteServerText(conn, []byte("hello")); err != nil {
		return
	}
	for {
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(conn, op, []byte(o.prefix+string(msg))); err != nil {
			return
		}
	}
}

func startOrigin(t *testing.T, prefix string) *httptest.Server {
	o := &origin{prefix: prefix}
	srv := httptest.NewServer(o)
	t.Cleanup(func() {
		srv.Close()
		o.wg.Wait()
	})
	return srv
}

// record drives a session through the proxy with coder/websocket and
// writes what the proxy saw as a HAR file.
func record(t *testing.T, live *httptest.Server) string {
	t.Helper()
	px := proxytest.Start(t)
	resp, err := px.Client().Get(live.URL + "/api/info")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	tr := &http.Transport{Proxy: http.ProxyURL(px.URL())}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(live.URL, "http")+"/chat", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	expect := func(want string) {
		t.Helper()
		if _, got, err := c.Read(ctx); err != nil || string(got) != want {
			t.Fatalf("recording: read %q, %v; want %q", got, err, want)
		}
	}
	expect("hello")
	for _, m := range []string{"a", `{"op":"b","n":1}`} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		expect("ans:" + m)
	}
	c.Close(websocket.StatusNormalClosure, "done")
	px.WaitFor(t, proxytest.IsKind(flow.KindWSClose), 5*time.Second)
	px.WaitFor(t, proxytest.IsExchange("GET", live.URL+"/api/info"), 5*time.Second)

	st := store.New(store.Options{})
	st.Observe(px.Flows())
	path := filepath.Join(t.TempDir(), "session.har")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := har.Write(f, st, har.Options{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// A recorded session, served as a mock, answers a second, independent
// client (gobwas/ws) as the live server did.
func TestMockAnswersAnIndependentClient(t *testing.T) {
	path := record(t, startOrigin(t, "ans:"))
	rec, err := replay.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Sessions) != 1 || len(rec.Exchanges) != 1 {
		t.Fatalf("recording has %d sessions and %d exchanges", len(rec.Sessions), len(rec.Exchanges))
	}
	for _, tc := range []struct {
		match  string
		timing string
		send   []string
		want   []string
	}{
		{replay.MatchOrder, replay.TimingFast, []string{"x", "y"}, []string{"ans:a", `ans:{"op":"b","n":1}`}},
		{replay.MatchMessage, replay.TimingFast, []string{`{"n":1,"op":"b"}`, "a"}, []string{`ans:{"op":"b","n":1}`, "ans:a"}},
		{replay.MatchOrder, replay.TimingOriginal, []string{"a", `{"op":"b","n":1}`}, []string{"ans:a", `ans:{"op":"b","n":1}`}},
	} {
		t.Run(tc.match+"/"+tc.timing, func(t *testing.T) {
			mock, err := replay.NewServer(rec, replay.Options{Match: tc.match, Timing: tc.timing})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(mock)
			defer srv.Close()
			defer mock.Close()

			resp, err := http.Get(srv.URL + "/api/info")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != `{"version":3}` || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET /api/info from the mock: %d %s %v", resp.StatusCode, body, resp.Header)
			}
			if resp, err := http.Get(srv.URL + "/elsewhere"); err != nil || resp.StatusCode != 404 {
				t.Fatalf("an unrecorded path: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, br, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/chat")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			// The greeting may have come with the handshake, in br.
			rw := io.ReadWriter(conn)
			if br != nil {
				rw = struct {
					io.Reader
					io.Writer
				}{br, conn}
			}
			read := func(want string) {
				t.Helper()
				got, err := wsutil.ReadServerText(rw)
				if err != nil || string(got) != want {
					t.Fatalf("read %q, %v; want %q", got, err, want)
				}
			}
			read("hello")
			for i, m := range tc.send {
				if err := wsutil.WriteClientText(conn, []byte(m)); err != nil {
					t.Fatal(err)
				}
				read(tc.want[i])
			}
			// The recording ends with the client's close: the mock waits.
			if err := wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
				t.Fatal(err)
			}
			if mock.Misses() != 1 { // the unrecorded path
				t.Errorf("misses %d, want 1", mock.Misses())
			}
		})
	}
}

// Replayed against a live server, a recording reports where the answers
// differ.
func TestAgainstLiveServer(t *testing.T) {
	path := record(t, startOrigin(t, "ans:"))
	rec, err := replay.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix string
		diffs  int
	}{{"ans:", 0}, {"ANS:", 2}} {
		live := startOrigin(t, tc.prefix)
		target, _ := url.Parse(live.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		report, err := rec.Against(ctx, replay.AgainstOptions{Target: target, Wait: 5 * time.Second})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if report.Differences != tc.diffs {
			t.Errorf("against %q: %d differences, want %d:\n%s", tc.prefix, report.Differences, tc.diffs, report)
		}
		if tc.diffs > 0 && !strings.Contains(report.String(), `+ "ANS:a"`) {
			t.Errorf("report does not show the live answer:\n%s", report)
		}
	}
}
