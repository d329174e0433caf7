package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigPrecedence(t *testing.T) {
	path := writeFile(t, "hopscope.yaml", `
listen: 127.0.0.1:9999
connect-ports: "443,8443"
allow-host:
  - "*.example.com"
  - api.example.org
deny-host: [10.0.0.0/8]
dial-timeout: 3s
`)
	cfg, err := Parse([]string{"--config", path, "--connect-ports", "*", "--allow-host", "only.example"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" {
		t.Errorf("listen from file = %q", cfg.Listen)
	}
	if cfg.ConnectPorts != "*" {
		t.Errorf("flag must override file: connect-ports = %q", cfg.ConnectPorts)
	}
	if strings.Join(cfg.AllowHost, ",") != "only.example" {
		t.Errorf("a repeatable flag replaces the file's list: allow-host = %q", cfg.AllowHost)
	}
	if strings.Join(cfg.DenyHost, ",") != "10.0.0.0/8" || cfg.DialTimeout != 3*time.Second {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.ShutdownTimeout != Default().ShutdownTimeout {
		t.Errorf("defaults lost: shutdown-timeout %v", cfg.ShutdownTimeout)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nconect-ports: 443\n", []string{"line 2: unknown key conect-ports (the keys are the flag names"}},
		{"wrong type", "allow-host: {a: b}\n", []string{"line 1: a mapping where a list belongs"}},
		{"a list for one value", "connect-ports: [443, 8443]\n", []string{"line 1: a list where a single value belongs"}},
		{"a number for a list", "allow-host: 5\n", []string{"line 1: a number where a list belongs"}},
		{"bad duration", "dial-timeout: soon\n", []string{"line 1", "soon"}},
		{"not yaml", "listen: [\n", []string{"hopscope.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "hopscope.yaml", tc.yaml)
			_, err := Parse([]string{"--config=" + path}, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Parse([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestOpenProxyRefused(t *testing.T) {
	cases := []struct {
		cfg    func(*Config)
		refuse bool
	}{
		{func(c *Config) { c.Listen = "127.0.0.1:8080" }, false},
		{func(c *Config) { c.Listen = "[::1]:8080" }, false},
		{func(c *Config) { c.Listen = "localhost:8080" }, false},
		{func(c *Config) { c.Listen = "0.0.0.0:8080" }, true},
		{func(c *Config) { c.Listen = ":8080" }, true},
		{func(c *Config) { c.Listen = "192.0.2.1:8080" }, true},
		{func(c *Config) { c.Listen = ":8080"; c.AllowOpen = true }, false},
		{func(c *Config) { c.Listen = ":8080"; c.Auth = []string{"a:b"} }, false},
		{func(c *Config) { c.Listen = ":8080"; c.Htpasswd = "users" }, false},
		{func(c *Config) { c.Listen = ":8080"; c.AllowClient = []string{"10.0.0.0/8"} }, false},
		// The SOCKS5 listener is held to the same rule.
		{func(c *Config) { c.SOCKS5 = "127.0.0.1:1080" }, false},
		{func(c *Config) { c.SOCKS5 = "0.0.0.0:1080" }, true},
		{func(c *Config) { c.SOCKS5 = ":1080"; c.Auth = []string{"a:b"} }, false},
		{func(c *Config) { c.SOCKS5 = "192.0.2.1:1080"; c.AllowOpen = true }, false},
	}
	for _, tc := range cases {
		cfg := Default()
		tc.cfg(&cfg)
		err := cfg.CheckOpenProxy()
		if (err != nil) != tc.refuse {
			t.Errorf("listen %s socks5 %s auth %v clients %v open %v: err %v", cfg.Listen, cfg.SOCKS5, cfg.Auth, cfg.AllowClient, cfg.AllowOpen, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "open proxy") || !strings.Contains(err.Error(), "--allow-open")) {
			t.Errorf("the refusal must say why and how: %v", err)
		}
	}
	// A bare port is taken for what it is, with the address meant.
	for flagName, set := range map[string]func(*Config){"--listen": func(c *Config) { c.Listen = "8080" }, "--socks5": func(c *Config) { c.SOCKS5 = "1080" }} {
		cfg := Default()
		set(&cfg)
		port := map[string]string{"--listen": "8080", "--socks5": "1080"}[flagName]
		if err := cfg.CheckOpenProxy(); err == nil || !strings.Contains(err.Error(), "such as "+flagName+" 127.0.0.1:"+port) {
			t.Errorf("%s %s: %v", flagName, port, err)
		}
	}
}

// A profile only sets defaults: the config file and flags win, and a
// profile named in the file applies when no flag names one.
func TestProfilesAreDefaults(t *testing.T) {
	cfg, err := Parse([]string{"--profile", "squid"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Persona != "squid" || cfg.ForwardPorts == "" || cfg.Upgrade != "strip-keepalive" || cfg.ConnectPorts != "443" {
		t.Errorf("squid profile: %+v", cfg)
	}
	cfg, err = Parse([]string{"--profile=squid,idle-timeout=30s", "--connect-ports", "443,8443", "--upgrade", "relay"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnectPorts != "443,8443" || cfg.Upgrade != "relay" || cfg.TunnelIdleTimeout != 30*time.Second || cfg.Persona != "squid" {
		t.Errorf("flags must win over the profile: %+v", cfg)
	}
	path := writeFile(t, "hopscope.yaml", "profile: [strip-upgrade]\nweb-filter: true\n")
	cfg, err = Parse([]string{"--config", path}, io.Discard)
	if err != nil || cfg.Upgrade != "strip-close" || !cfg.WebFilter {
		t.Errorf("profile from the file: %+v %v", cfg, err)
	}
	cfg, err = Parse([]string{"--config", path, "--profile", "ssl-inspect"}, io.Discard)
	if err != nil || cfg.Upgrade != "" || !cfg.MITM {
		t.Errorf("--profile replaces the file's profiles: %+v %v", cfg, err)
	}
	for _, bad := range [][]string{{"--profile", "bluecoat"}, {"--profile", "idle-timeout"}, {"--profile", "idle-timeout=-1s"}, {"--profile", "squid=1"}} {
		if _, err := Parse(bad, io.Discard); err == nil || !strings.Contains(err.Error(), "--profile") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, bad := range [][]string{{"--fault", "explode"}, {"--upgrade", "sideways"}, {"--persona", "bluecoat"}, {"--forward-ports", "x"}} {
		cfg, err := Parse(bad, io.Discard)
		if err == nil {
			_, _, err = cfg.ProxyOptions()
		}
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Without --mitm an existing CA is loaded for the CA page, and none is
// created.
func TestCAWithoutBumping(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse([]string{"--ca-dir", dir}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opts, _, err := cfg.ProxyOptions()
	if err != nil || opts.CA != nil {
		t.Fatalf("no CA yet: %v %v", opts.CA, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a CA was created without --mitm: %v", entries)
	}
	cfg.MITM = true
	if _, st, err := cfg.ProxyOptions(); err != nil || !st.Created {
		t.Fatalf("--mitm creates it: %+v %v", st, err)
	}
	cfg.MITM = false
	opts, st, err := cfg.ProxyOptions()
	if err != nil || opts.CA == nil || st.Fingerprint == "" || opts.Issuer != nil {
		t.Errorf("an existing CA is loaded for the page only: %+v %v", st, err)
	}
}

// --no-proxy takes host patterns, NO_PROXY-style lists and <local>.
func TestNoProxy(t *testing.T) {
	cfg := Default()
	cfg.NoProxy = []string{".corp.example, <local>", "db.internal:5432", "10.0.0.0/8"}
	opts, err := cfg.proxyOptions()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range opts.NoProxy {
		got = append(got, p.String())
	}
	if want := "*.corp.example corp.example db.internal:5432 10.0.0.0/8"; strings.Join(got, " ") != want || !opts.NoProxyPlainNames {
		t.Errorf("no-proxy %q plain %v, want %q and plain names", got, opts.NoProxyPlainNames, want)
	}
	cfg.NoProxy = []string{"bad host"}
	if _, err := cfg.proxyOptions(); err == nil || !strings.Contains(err.Error(), "--no-proxy") {
		t.Errorf("a bad pattern: %v", err)
	}
}

func TestUISettingsRefuseAnOpenUI(t *testing.T) {
	cases := []struct {
		args   []string
		refuse string
		loop   bool
	}{
		{args: nil},
		{args: []string{"--ui", "127.0.0.1:8081"}, loop: true},
		{args: []string{"--ui", "[::1]:0"}, loop: true},
		{args: []string{"--ui", "localhost:8081"}, loop: true},
		{args: []string{"--ui", "0.0.0.0:8081"}, refuse: "--ui-auth"},
		{args: []string{"--ui", "0.0.0.0:8081", "--ui-auth", "alice:s3cret"}},
		{args: []string{"--ui", "8081"}, refuse: "give host:port, such as --ui 127.0.0.1:8081"},
		{args: []string{"--ui-auth", "alice"}, refuse: "user:pass"},
	}
	for _, tc := range cases {
		cfg, err := Parse(tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ui, err := cfg.UISettings()
		if tc.refuse != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refuse) {
				t.Errorf("%v: err %v, want one naming %s", tc.args, err, tc.refuse)
			}
			continue
		}
		if err != nil || ui.Loopback != tc.loop || ui.Host != "hopscope.ui" {
			t.Errorf("%v: %+v %v", tc.args, ui, err)
		}
	}
}
