package store

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hopscope/hopscope/flow"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in, canonical, err string
	}{
		{in: "", canonical: ""},
		{in: "  hello   world ", canonical: "hello world"},
		{in: `"hello world"`, canonical: `"hello world"`},
		{in: `HOST:Example.com path:/api`, canonical: "host:Example.com path:/api"},
		{in: `host:"a b"`, canonical: `host:"a b"`},
		{in: `method:post status:4xx`, canonical: "method:post status:4xx"},
		{in: `status:400-499 status:201`, canonical: "status:400-499 status:201"},
		{in: `type:ws type:denied`, canonical: "type:ws type:denied"},
		{in: `header:x-foo header:X-Foo=bar`, canonical: "header:x-foo header:X-Foo=bar"},
		{in: `-~open ~Dropped`, canonical: "-~open ~dropped"},
		{in: `-host:cdn`, canonical: "-host:cdn"},
		{in: `http://example.com/x`, canonical: `"http://example.com/x"`},
		{in: `"host:x"`, canonical: `"host:x"`},
		{in: `"say \"hi\""`, canonical: `"say \"hi\""`},
		{in: `- x`, canonical: `"-" x`},
		{in: `msg:"a:b" body:{"a":1}`, canonical: `msg:a:b body:{a:1}`}, // quotes group, they do not match
		{in: `10:30`, canonical: `"10:30"`},
		{in: `host:`, err: "host: needs a value"},
		{in: `status:4x`, err: "status:4x"},
		{in: `status:499-400`, err: "status:499-400"},
		{in: `type:mail`, err: "not a type"},
		{in: `~nope`, err: "unknown marker ~nope"},
		{in: `header:=x`, err: "needs a header name"},
		{in: `"open`, err: "not closed"},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseFilter(%q) error %v, want one saying %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tt.in, err)
			continue
		}
		if got := f.String(); got != tt.canonical {
			t.Errorf("ParseFilter(%q).String() = %q, want %q", tt.in, got, tt.canonical)
		}
	}
}

// filterWorld is a store with one flow of each sort the language tells
// apart, named for the table below.
func filterWorld(t *testing.T) (*Store, map[string]flow.ID) {
	t.Helper()
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	names := map[string]flow.ID{}
	var recs []flow.Record

	_, get := w.exchange("GET", "http://example.com/api/users?id=7", 200, "", `{"name":"Ada Lovelace"}`)
	names["get"] = get.Exchange.ID
	_, post := w.exchange("POST", "https://api.example.org/v1/login", 401, "user=bob&password=hunter2", "denied")
	post.Exchange.RequestHeader = http.Header{"X-Trace": {"abc-123"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	post.Exchange.Bumped = true
	names["post"] = post.Exchange.ID
	_, fail := w.exchange("GET", "http://down.example/", 502, "", "")
	fail.Exchange.Error = "dial tcp: connection refused"
	fail.Exchange.AnsweredBy = "proxy"
	names["fail"] = fail.Exchange.ID
	recs = append(recs, get, post, fail)

	_, tun := w.tunnel("splice.example", "splice")
	names["tunnel"] = tun.Tunnel.ID
	recs = append(recs, tun)

	ws := w.websocket("ws://chat.example/room")
	names["ws"] = ws.ex.ID
	recs = append(recs, ws.open()...)
	recs = append(recs, ws.msg(flow.FromClient, flow.OpText, "Hello Room"))
	dropped := ws.msg(flow.FromServer, flow.OpText, "kick everyone")
	dropped.Message.Action = "drop"
	recs = append(recs, dropped)
	recs = append(recs, flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Flow: ws.ss.ID, Fault: "ws-drop", Detail: "dropped"}})

	deniedID := w.bus.NextID()
	names["denied"] = deniedID
	recs = append(recs, flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{
		Flow: deniedID, Method: "CONNECT", Target: "evil.example:25", Rule: "connect-ports=443", Reason: "port 25 is not allowed", Status: 403,
	}})
	publish(t, st, recs...)
	return st, names
}

func TestFilterMatches(t *testing.T) {
	st, names := filterWorld(t)
	tests := []struct {
		filter string
		want   []string // in store order
	}{
		{"", []string{"get", "post", "fail", "tunnel", "ws", "denied"}},
		{"example.com", []string{"get"}},
		{"lovelace", []string{"get"}},       // response body
		{"hunter2", []string{"post"}},       // request body
		{"hello", []string{"ws"}},           // message payload, case folded
		{"refused", []string{"fail"}},       // error
		{"allowed not", []string{"denied"}}, // two words: both must match, anywhere
		{`"allowed not"`, []string{}},       // a phrase must match as written
		{`"not allowed"`, []string{"denied"}},
		{"host:example", []string{"get", "post", "fail", "tunnel", "ws", "denied"}},
		{"host:chat", []string{"ws"}},
		{"-host:example.com", []string{"post", "fail", "tunnel", "ws", "denied"}},
		{"path:/api", []string{"get"}},
		{"path:id=7", []string{"get"}},
		{"url:https://", []string{"post"}},
		{"method:post", []string{"post"}},
		{"method:connect", []string{"tunnel", "denied"}},
		{"status:4xx", []string{"post", "denied"}},
		{"status:500-599", []string{"fail"}},
		{"status:101", []string{"ws"}},
		{"type:http", []string{"get", "post", "fail"}},
		{"type:tunnel", []string{"tunnel"}},
		{"type:websocket", []string{"ws"}},
		{"type:denied", []string{"denied"}},
		{"type:fault", []string{"ws"}},
		{"type:bumped", []string{"post"}},
		{"header:x-trace", []string{"post"}},
		{"header:X-TRACE=ABC", []string{"post"}},
		{"header:x-trace=zzz", []string{}},
		{"header:upgrade=websocket", []string{"ws"}},
		{"body:ada", []string{"get"}},
		{"body:hello", []string{}},
		{"msg:kick", []string{"ws"}},
		{"msg:lovelace", []string{}},
		{"error:refused", []string{"fail"}},
		{"~dropped", []string{"ws"}},
		{"~rewritten", []string{}},
		{"~fault", []string{"ws"}},
		{"~denied", []string{"denied"}},
		{"~error", []string{"fail"}},
		{"~open", []string{"ws"}},
		{"-~open type:http", []string{"get", "post", "fail"}},
		{"~bumped", []string{"post"}},
		{"http://example.com/api", []string{"get"}},
	}
	for _, tt := range tests {
		var want []flow.ID
		for _, n := range tt.want {
			want = append(want, names[n])
		}
		got := ids(listFlows(t, st, tt.filter))
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("filter %q: got %v, want %v (%v)", tt.filter, got, want, tt.want)
		}
	}
}

func TestContainsFold(t *testing.T) {
	tests := []struct {
		h, needle string
		want      bool
	}{
		{"Hello World", "world", true},
		{"Hello World", "hello w", true},
		{"HELLO", "hello", true},
		{"hell", "hello", false},
		{"", "", true},
		{"abc", "", true},
		{"xxaXaB", "ab", true},
		{"x1-2", "1-2", true},
		{"aaaaab", "aab", true},
		{"ÄBC", "äbc", false}, // ASCII folding only
	}
	for _, tt := range tests {
		if got := containsFold([]byte(tt.h), tt.needle); got != tt.want {
			t.Errorf("containsFold(%q, %q) = %v", tt.h, tt.needle, got)
		}
	}
}

// FuzzParseFilter checks that any input either fails to parse or parses
// to a filter whose canonical form reads back to itself, and that
// matching never panics.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"host:a b", `"x y" -~open`, `status:4xx type:ws header:a=b`, `msg:"q\"" -"-"`, `~dropped`, `url:http://x:1/`} {
		f.Add(s)
	}
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://fuzz.example/")
	st.Observe(append(ws.open(), ws.msg(flow.FromClient, flow.OpText, "payload")))
	f.Fuzz(func(t *testing.T, src string) {
		flt, err := ParseFilter(src)
		if err != nil {
			return
		}
		canon := flt.String()
		again, err := ParseFilter(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, src, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q -> %q", src, canon, again.String())
		}
		if !reflect.DeepEqual(again.terms, flt.terms) {
			t.Fatalf("%q and its canonical form %q differ: %+v vs %+v", src, canon, flt.terms, again.terms)
		}
		st.ListFilter(flt, Query{})
	})
}

func TestBodySearchLooksInsideContentCodings(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"greeting":"Bonjour tout le monde"}`))
	zw.Close()
	_, e := w.exchange("GET", "http://gz.example/", 200, "", "")
	e.Exchange.ResponseHeader = http.Header{"Content-Encoding": {"gzip"}}
	e.Exchange.ResponseBody = flow.Body{Data: gz.Bytes(), Len: int64(gz.Len())}
	_, plain := w.exchange("GET", "http://plain.example/", 200, "", "nothing here")
	publish(t, st, e, plain)
	for _, filter := range []string{"bonjour", "body:bonjour", `body:"tout le monde"`} {
		if got := ids(listFlows(t, st, filter)); !reflect.DeepEqual(got, []flow.ID{e.Exchange.ID}) {
			t.Errorf("%s: got %v, want the gzip answer %d", filter, got, e.Exchange.ID)
		}
	}
}

func TestExportFilter(t *testing.T) {
	st, names := filterWorld(t)
	f, err := ParseFilter("type:websocket")
	if err != nil {
		t.Fatal(err)
	}
	x := st.ExportFilter(f)
	if len(x) != 1 || x[0].Flow.ID != names["ws"] || len(x[0].Messages) != 2 || string(x[0].Messages[0].Payload) != "Hello Room" {
		t.Fatalf("ExportFilter(type:websocket): %+v", x)
	}
	if all := st.Export(); len(all) != len(names) {
		t.Errorf("Export: %d flows, want %d", len(all), len(names))
	}
}

func TestHostPath(t *testing.T) {
	for raw, want := range map[string][2]string{
		"http://example.com/api?x=1":      {"example.com", "/api?x=1"},
		"https://example.com:8443/a/b#f":  {"example.com", "/a/b"},
		"ws://chat.example":               {"chat.example", ""},
		"wss://h.example?q":               {"h.example", "?q"},
		"http://[::1]:8080/v6":            {"::1", "/v6"},
		"http://user:pw@h.example/secret": {"h.example", "/secret"},
		"http://h.example/%7Euser":        {"h.example", "/%7Euser"},
		"not a url %zz":                   {"", "not a url %zz"},
	} {
		if h, p := hostPath(raw); h != want[0] || p != want[1] {
			t.Errorf("hostPath(%q) = %q, %q; want %q, %q", raw, h, p, want[0], want[1])
		}
	}
}
