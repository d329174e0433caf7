package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/eventlog"
)

// BenchmarkCleanRequestHeaders is the per-request header work: hop-by-hop
// removal (including names listed in Connection), TE: trailers kept, Via.
func BenchmarkCleanRequestHeaders(b *testing.B) {
	template := http.Header{
		"Connection":          {"keep-alive, X-Custom"},
		"X-Custom":            {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic eDp5"},
		"Te":                  {"trailers"},
		"Accept":              {"*/*"},
		"User-Agent":          {"bench"},
		"Cookie":              {"a=b"},
	}
	h := make(http.Header, len(template)+1)
	via := newViaCache("hopscope")
	b.ReportAllocs()
	for b.Loop() {
		clear(h)
		for k, v := range template {
			h[k] = v
		}
		cleanRequestHeaders(h)
		via.add(h, 1, 1)
	}
}

// BenchmarkHTTPEvent is the publisher's cost of one exchange's records
// (its start and its end) with the event log observing at the default
// level, with the level off (nothing may be formatted then), and with no
// observer at all (nothing may be built then). The log formats on its own
// goroutine, which the allocation figures include.
func BenchmarkHTTPEvent(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/path?q=1", nil)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	info := connInfo{id: 42, client: "127.0.0.1:50000"}
	respHeader := http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"1234"}}
	for _, tc := range []struct {
		name     string
		level    zerolog.Level
		observed bool
	}{{"info", zerolog.InfoLevel, true}, {"off", zerolog.WarnLevel, true}, {"unobserved", zerolog.InfoLevel, false}} {
		b.Run(tc.name, func(b *testing.B) {
			logger := zerolog.New(io.Discard).Level(tc.level).With().Timestamp().Logger()
			srv, err := New(nil, logger)
			if err != nil {
				b.Fatal(err)
			}
			if tc.observed {
				eventlog.Subscribe(srv.Flows(), logger, eventlog.Options{})
			}
			b.Cleanup(srv.Flows().Close)
			b.ReportAllocs()
			for b.Loop() {
				x := srv.startExchange(r, info, "http://example.com/path?q=1")
				x.responseHead()
				x.finish(exchangeEnd{status: 200, header: respHeader, respBytes: 1234,
					answeredBy: answeredByDestination, complete: true})
			}
		})
	}
}

// endlessReader never ends and never fails, so that only the body's own
// work is counted.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) { return len(p), nil }

// Reading a request body through the proxy's count costs no allocation
// per read: the error it keeps must not make every read's error escape.
func TestCountingBodyReadDoesNotAllocate(t *testing.T) {
	body := &countingBody{ReadCloser: io.NopCloser(endlessReader{})}
	buf := make([]byte, 512)
	if allocs := testing.AllocsPerRun(100, func() { _, _ = body.Read(buf) }); allocs != 0 {
		t.Fatalf("%.1f allocations per read, want 0", allocs)
	}
}
