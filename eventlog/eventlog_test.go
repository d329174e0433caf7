package eventlog_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/flow"
)

// logLines publishes recs to an event log with opts and returns the
// lines it wrote, decoded.
func logLines(t *testing.T, opts eventlog.Options, recs ...flow.Record) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	bus := flow.NewBus()
	eventlog.Subscribe(bus, zerolog.New(&buf).Level(zerolog.InfoLevel), opts)
	for _, r := range recs {
		bus.Publish(r)
	}
	bus.Close() // returns when the log has written everything
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		out = append(out, e)
	}
	return out
}

func message(op flow.Opcode, payload string, length int64) flow.Record {
	return flow.Record{Kind: flow.KindWSMessage, Message: flow.WSMessage{
		Session: 7, Client: flow.Client{Conn: 3, Addr: "127.0.0.1:4000"}, Seq: 1, From: flow.FromClient,
		Opcode: op, Len: length, WireLen: length + 6, Fragments: 1, Action: "pass", Payload: []byte(payload),
	}}
}

// What ws_message shows of a payload in each --ws-log mode.
func TestWSMessagePreviewModes(t *testing.T) {
	long := strings.Repeat("é", 10) // 20 bytes
	cases := []struct {
		name    string
		opts    eventlog.Options
		rec     flow.Record
		preview any // nil: no preview field
	}{
		{"preview text", eventlog.Options{}, message(flow.OpText, "hello", 5), "hello"},
		{"preview binary as base64", eventlog.Options{}, message(flow.OpBinary, "\x00\x01\x02\xff", 4), "AAEC/w=="},
		{"preview cut on a character boundary", eventlog.Options{Preview: 5}, message(flow.OpText, long[:5], 20), "éé"},
		{"preview of a copy longer than the preview", eventlog.Options{Preview: 5}, message(flow.OpText, long, 20), "éé"},
		{"invalid text replaced", eventlog.Options{}, message(flow.OpText, "a\xffb", 3), "a\uFFFDb"},
		{"close shows its reason", eventlog.Options{}, message(flow.OpClose, "\x03\xe8bye", 5), "bye"},
		{"meta has no preview", eventlog.Options{WSLog: eventlog.WSLogMeta}, message(flow.OpText, "hello", 5), nil},
		{"full shows what was kept", eventlog.Options{WSLog: eventlog.WSLogFull, Preview: 2}, message(flow.OpText, "hello", 5), "hello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := logLines(t, tc.opts, tc.rec)
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1: %v", len(lines), lines)
			}
			e := lines[0]
			if e["event"] != "ws_message" || e["conn"] != 3.0 || e["client"] != "127.0.0.1:4000" || e["from"] != "client" {
				t.Errorf("line %v", e)
			}
			if e["preview"] != tc.preview {
				t.Errorf("preview %q, want %q", e["preview"], tc.preview)
			}
		})
	}
	if lines := logLines(t, eventlog.Options{WSLog: eventlog.WSLogOff}, message(flow.OpText, "hello", 5)); len(lines) != 0 {
		t.Errorf("--ws-log off wrote %v", lines)
	}
}

// Flows that rode in a tunnel name it by the tunnel's conn; levels follow
// the outcome.
func TestEventFieldsAndLevels(t *testing.T) {
	client := flow.Client{Conn: 9, Addr: "127.0.0.1:5000"}
	lines := logLines(t, eventlog.Options{},
		flow.Record{Kind: flow.KindExchangeStart, Exchange: &flow.Exchange{Client: client}},
		flow.Record{Kind: flow.KindExchange, Exchange: &flow.Exchange{Client: client, Tunnel: 4, Method: "GET",
			URL: "https://a.test/", Proto: "HTTP/1.1", Status: 502, ResponseBody: flow.Body{Len: 10},
			Duration: 1500 * time.Microsecond, Error: "boom"}},
		flow.Record{Kind: flow.KindTunnelOpen, Tunnel: &flow.Tunnel{Client: client}},
		flow.Record{Kind: flow.KindTunnel, Tunnel: &flow.Tunnel{Client: client, Host: "a.test", Port: 443, Mode: "bump",
			Status: 200, SNI: "a.test", Leaf: "minted"}},
		flow.Record{Kind: flow.KindWSClose, Session: &flow.WSSession{Client: client, Tunnel: 4, Code: 1006, ClosedBy: "server"}},
		flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Client: client, Method: "CONNECT", Target: "a.test:25", Rule: "connect-ports=443",
			Reason: "port 25 is not in the CONNECT port list 443", Hint: "To allow it, start hopscope with --connect-ports 443,25.", Status: 403}},
		flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Client: client, Method: "GET", Target: "http://a.test/", Rule: "via", Reason: "looped", Status: 508}},
	)
	if len(lines) != 5 {
		t.Fatalf("%d lines, want http, tunnel, ws_close, deny, deny (starts and opens are not logged): %v", len(lines), lines)
	}
	http, tunnel, wsClose, deny, loop := lines[0], lines[1], lines[2], lines[3], lines[4]
	if deny["event"] != "deny" || deny["level"] != "warn" || deny["rule"] != "connect-ports=443" || deny["status"] != 403.0 ||
		deny["hint"] != "To allow it, start hopscope with --connect-ports 443,25." {
		t.Errorf("deny %v", deny)
	}
	if _, ok := loop["hint"]; ok || loop["rule"] != "via" {
		t.Errorf("a denial nothing would allow has no hint: %v", loop)
	}
	if http["event"] != "http" || http["level"] != "warn" || http["tunnel"] != 9.0 || http["error"] != "boom" ||
		http["resp_bytes"] != 10.0 || http["duration_ms"] != 1.5 {
		t.Errorf("http %v", http)
	}
	if tunnel["event"] != "tunnel" || tunnel["level"] != "info" || tunnel["sni"] != "a.test" || tunnel["leaf"] != "minted" {
		t.Errorf("tunnel %v", tunnel)
	}
	if wsClose["level"] != "warn" || wsClose["code"] != 1006.0 || wsClose["from"] != "server" || wsClose["tunnel"] != 9.0 {
		t.Errorf("a WebSocket that ended without a close handshake: %v", wsClose)
	}
}

// blockingWriter holds every write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// A log that cannot keep up misses records without slowing anyone, and
// says how many it missed.
func TestEventLogReportsWhatItMissed(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	bus := flow.NewBus()
	eventlog.Subscribe(bus, zerolog.New(w), eventlog.Options{Queue: 1})
	for range 50 {
		bus.Publish(message(flow.OpText, "x", 1))
	}
	close(w.release)
	bus.Publish(message(flow.OpText, "x", 1))
	bus.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	var dropped float64
	for _, line := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e["event"] == eventlog.EventDropped {
			dropped += e["dropped"].(float64)
		}
	}
	if dropped == 0 {
		t.Errorf("no %s event; log:\n%s", eventlog.EventDropped, w.buf.String())
	}
}

// The log asks the bus for as much payload as its mode shows, and for none
// when its level cannot write ws_message: every byte asked for is copied
// by the relay, per message.
func TestPayloadBytesFollowModeAndLevel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level zerolog.Level
		opts  eventlog.Options
		want  int
	}{
		{"preview", zerolog.InfoLevel, eventlog.Options{}, 256},
		{"preview of 16", zerolog.DebugLevel, eventlog.Options{Preview: 16}, 16},
		{"full", zerolog.InfoLevel, eventlog.Options{WSLog: eventlog.WSLogFull, FullBytes: 4096}, 4096},
		{"meta", zerolog.InfoLevel, eventlog.Options{WSLog: eventlog.WSLogMeta}, 0},
		{"off", zerolog.InfoLevel, eventlog.Options{WSLog: eventlog.WSLogOff}, 0},
		{"preview at warn", zerolog.WarnLevel, eventlog.Options{}, 0},
		{"full at error", zerolog.ErrorLevel, eventlog.Options{WSLog: eventlog.WSLogFull}, 0},
		{"disabled logger", zerolog.Disabled, eventlog.Options{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := flow.NewBus()
			defer bus.Close()
			eventlog.Subscribe(bus, zerolog.New(io.Discard).Level(tc.level), tc.opts)
			if got := bus.PayloadBytes(); got != tc.want {
				t.Fatalf("the log asks for %d payload bytes, want %d", got, tc.want)
			}
		})
	}
}
