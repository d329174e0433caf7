package proxytest

import (
	"net/http/httptest"

	"github.com/hopscope/hopscope/replay"
)

// Replay serves a recorded session (a HAR file: `hopscope record`, the web
// UI's export, or a browser's) on 127.0.0.1 until the test ends, as
// httptest.NewServer serves a handler: HTTP requests get the recorded
// answers, a WebSocket client's messages the recorded server messages
// (see package replay for matching and timing). Point the code under test
// at the returned server's URL.
func Replay(t TB, file string, opts replay.Options) *httptest.Server {
	t.Helper()
	rec, err := replay.Load(file)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	mock, err := replay.NewServer(rec, opts)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	srv := httptest.NewServer(mock)
	t.Cleanup(func() {
		mock.Close()
		srv.Close()
	})
	return srv
}
