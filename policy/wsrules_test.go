package policy

import (
	"strings"
	"testing"
)

func i64(v int64) *int64 { return &v }

func TestWSRulesFirstMatchWins(t *testing.T) {
	rules, err := CompileWSRules([]WSRuleSpec{
		{Name: "drop-secrets", Match: WSMatchSpec{From: "client", Contains: "password"}, Action: WSDrop},
		{Match: WSMatchSpec{Type: "text", Regex: `^\{"op":"kick"`}, Action: WSClose, Code: 4000, Reason: "kicked"},
		{Match: WSMatchSpec{URL: "wss://*.example.com/chat*", MinLen: i64(10), MaxLen: i64(20)}, Action: WSRewrite, Replace: &WSReplaceSpec{Regex: "cat", With: "dog"}},
		{Match: WSMatchSpec{Type: "ping"}, Action: WSPass},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		msg  WSMessage
		want string
	}{
		{WSMessage{From: "client", Type: "text", Payload: []byte("my password")}, "drop-secrets"},
		{WSMessage{From: "server", Type: "text", Payload: []byte("my password")}, ""},
		{WSMessage{From: "server", Type: "text", Payload: []byte(`{"op":"kick"}`)}, "rules[1]"},
		{WSMessage{From: "server", Type: "binary", Payload: []byte(`{"op":"kick"}`)}, ""},
		{WSMessage{Type: "text", URL: "wss://a.b.example.com/chat/room?x=1", Len: 15}, "rules[2]"},
		{WSMessage{Type: "text", URL: "wss://a.b.example.com/chat/room", Len: 21}, ""},
		{WSMessage{Type: "text", URL: "wss://a.b.example.com/chat/room", Len: 9}, ""},
		{WSMessage{Type: "text", URL: "wss://example.org/chat", Len: 15}, ""},
		{WSMessage{Type: "ping"}, "rules[3]"},
	}
	for _, tc := range cases {
		got := ""
		if r := rules.Match(tc.msg); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%+v matched %q, want %q", tc.msg, got, tc.want)
		}
	}
	if !rules.Modifies() {
		t.Error("rules with drop must report Modifies")
	}
	if r := rules.Match(WSMessage{Type: "text", URL: "wss://x.example.com/chat", Len: 12}); string(r.Rewrite([]byte("cat cat"))) != "dog dog" {
		t.Error("rewrite")
	}
	if r := rules.Match(WSMessage{Type: "text", Payload: []byte(`{"op":"kick"}`)}); r.Code != 4000 || r.Reason != "kicked" {
		t.Errorf("close rule %+v", r)
	}
}

func TestWSRuleDefaultsAndErrors(t *testing.T) {
	r, err := CompileWSRule(WSRuleSpec{Action: WSClose})
	if err != nil || r.Code != 1008 {
		t.Fatalf("close default code: %d %v", r.Code, err)
	}
	passOnly, _ := CompileWSRules([]WSRuleSpec{{Action: WSPass}})
	if passOnly.Modifies() {
		t.Error("pass-only rules do not modify")
	}
	bad := []struct {
		spec WSRuleSpec
		says string
	}{
		{WSRuleSpec{}, "no action"},
		{WSRuleSpec{Action: "block"}, "block"},
		{WSRuleSpec{Action: WSDrop, Match: WSMatchSpec{From: "both"}}, "match.from"},
		{WSRuleSpec{Action: WSDrop, Match: WSMatchSpec{Type: "json"}}, "match.type"},
		{WSRuleSpec{Action: WSDrop, Match: WSMatchSpec{Regex: "("}}, "match.regex"},
		{WSRuleSpec{Action: WSDrop, Match: WSMatchSpec{MinLen: i64(5), MaxLen: i64(4)}}, "max_len"},
		{WSRuleSpec{Action: WSDrop, Match: WSMatchSpec{MinLen: i64(-1)}}, "min_len"},
		{WSRuleSpec{Action: WSClose, Code: 1005}, "1005"},
		{WSRuleSpec{Action: WSClose, Code: 999}, "999"},
		{WSRuleSpec{Action: WSClose, Reason: strings.Repeat("x", 124)}, "123"},
		{WSRuleSpec{Action: WSRewrite}, "replace"},
		{WSRuleSpec{Action: WSRewrite, Replace: &WSReplaceSpec{Regex: "["}}, "replace.regex"},
		{WSRuleSpec{Action: WSRewrite, Match: WSMatchSpec{Type: "ping"}, Replace: &WSReplaceSpec{Regex: "a"}}, "not ping"},
		{WSRuleSpec{Action: WSDrop, Code: 1000}, "belong to action close"},
		{WSRuleSpec{Action: WSDrop, Replace: &WSReplaceSpec{Regex: "a"}}, "belongs to action rewrite"},
	}
	for _, tc := range bad {
		_, err := CompileWSRules([]WSRuleSpec{{Action: WSPass}, tc.spec})
		if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "rule 2") {
			t.Errorf("%+v: error %v, want one naming rule 2 and %q", tc.spec, err, tc.says)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything/at/all", true},
		{"ws://host/*", "ws://host/a/b", true},
		{"ws://host/*", "ws://other/a", false},
		{"*.example.com/*", "wss://a.example.com/x", true},
		{"ws?://h/", "wss://h/", true},
		{"ws?://h/", "ws://h/", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range cases {
		if got := matchGlob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func str(s string) *string { return &s }

// json_path selects JSON payloads by a value's presence or its text.
func TestWSRuleJSONPath(t *testing.T) {
	rules, err := CompileWSRules([]WSRuleSpec{
		{Name: "order", Match: WSMatchSpec{JSONPath: "type", JSONEquals: str("order")}, Action: WSDrop},
		{Name: "qty", Match: WSMatchSpec{JSONPath: "items.1.qty", JSONEquals: str("3")}, Action: WSDrop},
		{Name: "has-token", Match: WSMatchSpec{JSONPath: "auth.token"}, Action: WSDrop},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		payload   string
		truncated bool
		want      string
	}{
		{`{"type":"order","id":1}`, false, "order"},
		{`{"type":"orders"}`, false, ""},
		{`{"items":[{"qty":1},{"qty":3}]}`, false, "qty"},
		{`{"items":[{"qty":1},{"qty":"3"}]}`, false, "qty"},
		{`{"items":[{"qty":3}]}`, false, ""},
		{`{"auth":{"token":null}}`, false, "has-token"},
		{`{"auth":"token"}`, false, ""},
		{`not json {"type":"order"}`, false, ""},
		{`{"type":"order"`, true, ""},
	} {
		got := ""
		if r := rules.Match(WSMessage{Type: "text", Payload: []byte(tc.payload), Truncated: tc.truncated}); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%s matched %q, want %q", tc.payload, got, tc.want)
		}
	}
	for _, bad := range []WSMatchSpec{{JSONPath: "a..b"}, {JSONEquals: str("x")}} {
		if _, err := CompileWSRule(WSRuleSpec{Match: bad, Action: WSDrop}); err == nil {
			t.Errorf("%+v compiled", bad)
		}
	}
}
