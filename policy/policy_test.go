package policy

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
)

type policyCase struct {
	Name         string   `json:"name"`
	ConnectPorts string   `json:"connect_ports"`
	ForwardPorts string   `json:"forward_ports"`
	Allow        []string `json:"allow"`
	Deny         []string `json:"deny"`
	Kind         string   `json:"kind"`
	Target       string   `json:"target"`
	Addr         string   `json:"addr"`
	Want         bool     `json:"want"`
	Rule         string   `json:"rule"`
}

func TestDecideCases(t *testing.T) {
	raw, err := os.ReadFile("../testdata/policy_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []policyCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("only %d cases loaded", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			p := New()
			if tc.ConnectPorts != "" {
				ports, err := ParsePortSet(tc.ConnectPorts)
				if err != nil {
					t.Fatal(err)
				}
				p.ConnectPorts = ports
			}
			if tc.ForwardPorts != "" {
				p.ForwardPorts = MustParsePortSet(tc.ForwardPorts)
			}
			for _, s := range tc.Allow {
				p.Allow = append(p.Allow, mustPattern(t, s))
			}
			for _, s := range tc.Deny {
				p.Deny = append(p.Deny, mustPattern(t, s))
			}
			host, port, err := SplitHostPort(tc.Target)
			if err != nil {
				t.Fatal(err)
			}
			req := Request{Kind: Forward, Host: host, Port: port}
			if tc.Kind == "connect" {
				req.Kind = Connect
			}
			if tc.Addr != "" {
				req.Addr = netip.MustParseAddr(tc.Addr)
			}
			d := p.Decide(req)
			if d.Allow != tc.Want {
				t.Fatalf("Decide(%+v) allow = %v, want %v (%+v)", req, d.Allow, tc.Want, d)
			}
			if d.Rule != tc.Rule {
				t.Errorf("rule = %q, want %q", d.Rule, tc.Rule)
			}
			if !d.Allow && (d.Reason == "" || d.Fix == "" || d.ProxyStatus == "") {
				t.Errorf("a denial must say why and how to allow it: %+v", d)
			}
		})
	}
}

func mustPattern(t testing.TB, s string) HostPattern {
	t.Helper()
	p, err := ParseHostPattern(s)
	if err != nil {
		t.Fatalf("ParseHostPattern(%q): %v", s, err)
	}
	return p
}

func TestDenialTextNamesTargetRuleAndFlag(t *testing.T) {
	d := New().Decide(Request{Kind: Connect, Host: "example.com", Port: 8443})
	for _, want := range []string{"8443", "443"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
	if d.Fix != "start hopscope with --connect-ports 443,8443" {
		t.Errorf("fix = %q", d.Fix)
	}
}

func TestParseErrors(t *testing.T) {
	badPorts := []string{"", "0", "65536", "abc", "9100-9000", "443,", "-5", "1-2-3"}
	for _, s := range badPorts {
		if _, err := ParsePortSet(s); err == nil {
			t.Errorf("ParsePortSet(%q) accepted", s)
		}
	}
	badHosts := []string{"", "a..b", "exa mple.com", "10.0.0.0/33", "[::1", "[::1]x", "host:0", "host:99999", "*.", "::1]:80"}
	for _, s := range badHosts {
		if _, err := ParseHostPattern(s); err == nil {
			t.Errorf("ParseHostPattern(%q) accepted", s)
		}
	}
	badTargets := []string{"example.com", ":443", "example.com:", "example.com:0", "example.com:https", "[::1]"}
	for _, s := range badTargets {
		if _, _, err := SplitHostPort(s); err == nil {
			t.Errorf("SplitHostPort(%q) accepted", s)
		}
	}
}

func TestAllowClient(t *testing.T) {
	p := New()
	if !p.AllowClient(netip.MustParseAddr("203.0.113.9")) {
		t.Fatal("no client rules must allow everyone")
	}
	for _, s := range []string{"127.0.0.0/8", "192.168.1.5"} {
		pfx, err := ParseClientPrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Clients = append(p.Clients, pfx)
	}
	cases := map[string]bool{"127.0.0.1": true, "::ffff:127.0.0.2": true, "192.168.1.5": true, "192.168.1.6": false, "::1": false}
	for addr, want := range cases {
		if got := p.AllowClient(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowClient(%s) = %v, want %v", addr, got, want)
		}
	}
	if _, err := ParseClientPrefix("nope"); err == nil {
		t.Error("ParseClientPrefix accepted junk")
	}
}

func BenchmarkDecide(b *testing.B) {
	p := New()
	p.Deny = []HostPattern{mustPattern(b, "10.0.0.0/8"), mustPattern(b, "*.internal")}
	p.Allow = []HostPattern{mustPattern(b, "*.example.com")}
	req := Request{Kind: Connect, Host: "www.example.com", Port: 443, Addr: netip.MustParseAddr("93.184.216.34")}
	b.ReportAllocs()
	for b.Loop() {
		if !p.Decide(req).Allow {
			b.Fatal("denied")
		}
	}
}

func TestBumpRules(t *testing.T) {
	cases := []struct {
		name    string
		rules   BumpRules
		host    string
		bump    bool
		inspect bool
	}{
		{"off by default", BumpRules{}, "example.com", false, true},
		{"all", BumpRules{All: true}, "example.com", true, true},
		{"host list", BumpRules{Hosts: []HostPattern{mustPattern(t, "*.example.com")}}, "api.example.com", true, true},
		{"host list miss", BumpRules{Hosts: []HostPattern{mustPattern(t, "*.example.com")}}, "example.org", false, true},
		{"never wins over all", BumpRules{All: true, Never: []HostPattern{mustPattern(t, "pinned.example")}}, "pinned.example", false, false},
		{"never by IP", BumpRules{All: true, Never: []HostPattern{mustPattern(t, "10.0.0.0/8")}}, "10.1.1.1", false, false},
		{"never matches name case-insensitively", BumpRules{All: true, Never: []HostPattern{mustPattern(t, "Pinned.Example")}}, "PINNED.example.", false, false},
	}
	for _, tc := range cases {
		if got := tc.rules.BumpTLS(tc.host, 443); got != tc.bump {
			t.Errorf("%s: BumpTLS = %v, want %v", tc.name, got, tc.bump)
		}
		if got := tc.rules.Inspect(tc.host, 443); got != tc.inspect {
			t.Errorf("%s: Inspect = %v, want %v", tc.name, got, tc.inspect)
		}
	}
}
