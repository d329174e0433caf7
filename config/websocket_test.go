package config

import (
	"io"
	"strings"
	"testing"
)

func TestWebSocketRulesFromConfig(t *testing.T) {
	path := writeFile(t, "hopscope.yaml", `
ws-inspect-limit: 64KiB
ws-max-message: 16MiB
ws-log: meta
websocket:
  rules:
    - name: no-secrets
      match: {from: client, contains: secret}
      action: drop
    - match: {type: text, regex: "^kick"}
      action: close
      code: 4000
      reason: kicked
`)
	cfg, err := Parse([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.webSocketOptions()
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Rules) != 2 || opts.Rules[0].Name != "no-secrets" || opts.Rules[1].Code != 4000 || !opts.Rules.Modifies() {
		t.Errorf("rules %+v", opts.Rules)
	}
	if opts.InspectLimit != 64<<10 || opts.MaxMessage != 16<<20 {
		t.Errorf("options %+v", opts)
	}
	if logOpts, err := cfg.EventLogOptions(); err != nil || logOpts.WSLog != "meta" {
		t.Errorf("event log options %+v, %v", logOpts, err)
	}
}

// A bad rule is refused at start with the file, the line and the reason.
func TestBadWebSocketRules(t *testing.T) {
	configWithBadRule := writeFile(t, "hopscope.yaml", "websocket:\n  rules:\n    - action: drop\n    - match: {regex: \"(\"}\n      action: drop\n")
	rulesFile := writeFile(t, "rules.yaml", "- action: pass\n- action: pass\n- action: explode\n")
	unknownField := writeFile(t, "rules.yaml", "- action: drop\n  matsh: {from: client}\n")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--config", configWithBadRule}, []string{"hopscope.yaml:4", "rule 2", "match.regex"}},
		{[]string{"--ws-rules", rulesFile}, []string{"rules.yaml:3", "rule 3", "explode"}},
		{[]string{"--ws-rules", unknownField}, []string{"rules.yaml", "line 2", "matsh"}},
		{[]string{"--ws-rules", "/nonexistent/rules.yaml"}, []string{"--ws-rules"}},
		{[]string{"--ws-log", "loud"}, []string{"--ws-log"}},
		{[]string{"--ws-inspect-limit", "lots"}, []string{"ws-inspect-limit"}},
		{[]string{"--ws-max-message", "-5"}, []string{"ws-max-message"}},
		{[]string{"--ws-preview", "-1"}, []string{"--ws-preview"}},
	}
	for _, tc := range cases {
		cfg, err := Parse(tc.args, io.Discard)
		if err == nil {
			_, err = cfg.webSocketOptions()
		}
		if err == nil {
			t.Errorf("%q accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not mention %q", tc.args, err, w)
			}
		}
	}
}

func TestParseByteSize(t *testing.T) {
	cases := map[string]int64{"0": 0, "1024": 1024, "1KiB": 1024, "1MiB": 1 << 20, "2 GiB": 2 << 30, "10MB": 10_000_000, "5KB": 5000, "7B": 7}
	for s, want := range cases {
		if got, err := parseByteSize(s); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "-1", "1TB", "99999999999GiB"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}
