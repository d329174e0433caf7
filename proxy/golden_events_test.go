package proxy_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The events of one plain request and one WebSocket session, in order,
// with what varies between runs (times, durations, ports) normalised:
// the event log is a public interface, and this file shows it whole.
func TestEventLogGolden(t *testing.T) {
	origin := httptest.NewServer(gobwasEcho())
	defer origin.Close()
	host := strings.TrimPrefix(origin.URL, "http://")
	px := startProxy(t, nil)

	c := coderClient(t, px, wsURL(origin.URL)+"/chat", nil, websocket.CompressionDisabled)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{"hello", "héllo wörld"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2, 255}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "bye")
	px.waitEvent("ws_close", nil)

	var lines []string
	for _, line := range strings.Split(px.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e["event"] == "listen" {
			continue // its address is a random port
		}
		for _, volatile := range []string{"time", "duration_ms", "client"} {
			if _, ok := e[volatile]; ok {
				e[volatile] = "*"
			}
		}
		lines = append(lines, canonicalJSON(e, host))
	}
	checkGolden(t, "events_websocket_session.golden", strings.Join(lines, "\n")+"\n")
}

// canonicalJSON writes e with sorted keys and the origin's address
// replaced, so the golden file reads the same every run.
func canonicalJSON(e map[string]any, host string) string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(e[k])
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
	}
	b.WriteByte('}')
	return strings.ReplaceAll(b.String(), host, "ORIGIN")
}
