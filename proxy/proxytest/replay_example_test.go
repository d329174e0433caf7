package proxytest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/proxy/proxytest"
	"github.com/hopscope/hopscope/replay"
)

// A chat client is tested against a session recorded in a browser (Chrome's
// HAR export), without the chat server: the mock answers the rooms request
// and each WebSocket message as the server did.
func ExampleReplay() {
	t := &exampleT{}
	defer t.done()
	mock := proxytest.Replay(t, "testdata/chat.har", replay.Options{Match: replay.MatchMessage})

	resp, err := http.Get(mock.URL + "/api/rooms")
	if err != nil {
		panic(err)
	}
	rooms, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(rooms))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(mock.URL, "http")+"/chat?room=lobby")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	rw := io.ReadWriter(conn)
	if br != nil { // the greeting came with the handshake
		rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	show := func() {
		msg, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%q\n", msg)
	}
	show()
	_ = wsutil.WriteClientText(conn, []byte(`{"say": "hi"}`)) // same JSON, other spacing
	show()
	_ = wsutil.WriteClientBinary(conn, []byte{0, 1, 2})
	show()
	// Output:
	// ["lobby","support"]
	// "welcome to lobby"
	// "{\"from\":\"bot\",\"say\":\"hi yourself\"}"
	// "\x03\x04\x05"
}
