// Package config holds every hopscope setting: the defaults, the named
// profiles that reproduce real proxies, the YAML file and the flags (in that
// order of precedence), and the conversion into proxy.Options. The command
// and the proxytest harness share it.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hopscope/hopscope/intercept"
)

// Config holds every setting. The YAML keys of --config are the flag names,
// so a setting is spelled the same way in both places.
type Config struct {
	Listen                string        `yaml:"listen"`
	SOCKS5                string        `yaml:"socks5"`
	NoProxy               []string      `yaml:"no-proxy"`
	ConnectPorts          string        `yaml:"connect-ports"`
	AllowHost             []string      `yaml:"allow-host"`
	DenyHost              []string      `yaml:"deny-host"`
	AllowClient           []string      `yaml:"allow-client"`
	AllowOpen             bool          `yaml:"allow-open"`
	Auth                  []string      `yaml:"auth"`
	Htpasswd              string        `yaml:"htpasswd"`
	UpstreamCA            string        `yaml:"upstream-ca"`
	InsecureUpstream      bool          `yaml:"insecure-upstream"`
	UpstreamProxy         string        `yaml:"upstream-proxy"`
	Pseudonym             string        `yaml:"pseudonym"`
	LogFormat             string        `yaml:"log-format"`
	LogLevel              string        `yaml:"log-level"`
	LogFile               string        `yaml:"log-file"`
	DialTimeout           time.Duration `yaml:"dial-timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response-header-timeout"`
	ReadHeaderTimeout     time.Duration `yaml:"read-header-timeout"`
	IdleTimeout           time.Duration `yaml:"idle-timeout"`
	ShutdownTimeout       time.Duration `yaml:"shutdown-timeout"`
	MaxHeaderBytes        int           `yaml:"max-header-bytes"`
	CADir                 string        `yaml:"ca-dir"`
	CAHost                string        `yaml:"ca-host"`
	MITM                  bool          `yaml:"mitm"`
	MITMHost              []string      `yaml:"mitm-host"`
	NoMITMHost            []string      `yaml:"no-mitm-host"`
	MITMHTTP1Only         bool          `yaml:"mitm-http1-only"`
	WebSocket             wsConfig      `yaml:"websocket"`
	storeConfig           `yaml:",inline"`
	interceptConfig       `yaml:",inline"`
	WSRules               string        `yaml:"ws-rules"`
	WSInspectLimit        byteSize      `yaml:"ws-inspect-limit"`
	WSPreview             int           `yaml:"ws-preview"`
	WSLog                 string        `yaml:"ws-log"`
	WSMaxMessage          byteSize      `yaml:"ws-max-message"`
	Profile               []string      `yaml:"profile"`
	Persona               string        `yaml:"persona"`
	PersonaVersion        string        `yaml:"persona-version"`
	ForwardPorts          string        `yaml:"forward-ports"`
	Upgrade               string        `yaml:"upgrade"`
	AllowUpgrade          []string      `yaml:"allow-upgrade"`
	WebFilter             bool          `yaml:"web-filter"`
	RequireAuth           bool          `yaml:"require-auth"`
	TunnelIdleTimeout     time.Duration `yaml:"tunnel-idle-timeout"`
	Fault                 []string      `yaml:"fault"`
	FaultSeed             uint64        `yaml:"fault-seed"`
	UI                    string        `yaml:"ui"`
	UIAuth                string        `yaml:"ui-auth"`
	UIHost                string        `yaml:"ui-host"`

	// wsRuleSource says where websocket.rules came from (file and lines).
	wsRuleSource ruleSource
}

// Default returns the settings hopscope runs with when nothing is said.
func Default() Config {
	return Config{
		Listen:                "127.0.0.1:8080",
		ConnectPorts:          "443",
		storeConfig:           defaultStoreConfig(),
		Pseudonym:             "hopscope",
		LogFormat:             "auto",
		LogLevel:              "info",
		DialTimeout:           10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ReadHeaderTimeout:     10 * time.Second,
		IdleTimeout:           2 * time.Minute,
		ShutdownTimeout:       10 * time.Second,
		MaxHeaderBytes:        64 << 10,
		CAHost:                "hopscope.ca",
		UIHost:                "hopscope.ui",
		WSInspectLimit:        1 << 20,
		WSPreview:             256,
		WSLog:                 "preview",
		interceptConfig:       interceptConfig{InterceptTimeout: intercept.DefaultTimeout},
	}
}

// loadConfigFile merges a YAML file into cfg. Unknown keys are an error that
// names the key and its line, so a typo never silently does nothing.
func loadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("config %s:\n  %s", path, strings.Join(plainYAMLErrors(te.Errors), "\n  "))
		}
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg.wsRuleSource = ruleSource{file: path, lines: ruleLines(data, "websocket", "rules")}
	return nil
}

// plainYAMLErrors rewrites yaml.v3's Go-flavoured complaints ("field x not
// found in type config.Config", "cannot unmarshal !!seq into string") in
// the words of the file's author.
func plainYAMLErrors(errs []string) []string {
	kinds := map[string]string{"!!seq": "a list", "!!map": "a mapping", "!!int": "a number", "!!float": "a number", "!!bool": "true or false"}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		line, rest, ok := strings.Cut(e, ": ")
		if !ok {
			out = append(out, e)
			continue
		}
		if key, found := strings.CutPrefix(rest, "field "); found {
			if key, _, found = strings.Cut(key, " not found in type "); found {
				out = append(out, fmt.Sprintf("%s: unknown key %s (the keys are the flag names: hopscope --help)", line, key))
				continue
			}
		}
		if what, found := strings.CutPrefix(rest, "cannot unmarshal "); found {
			if got, into, found := strings.Cut(what, " into "); found {
				tag, value, _ := strings.Cut(got, " ") // "!!int `5`"
				if into == "time.Duration" {
					out = append(out, fmt.Sprintf("%s: %s is not a duration, such as 10s or 2m", line, value))
					continue
				}
				if kind, known := kinds[tag]; known {
					want := "a single value"
					if strings.HasPrefix(into, "[]") {
						want = "a list"
					}
					out = append(out, fmt.Sprintf("%s: %s where %s belongs", line, kind, want))
					continue
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// listFlag is a repeatable flag. The first use on the command line replaces
// what the config file said instead of adding to it: flags override the file.
type listFlag struct {
	values *[]string
	set    bool
}

func (l *listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.values = nil
		l.set = true
	}
	*l.values = append(*l.values, v)
	return nil
}

// profileFlag accepts --profile; profiles are applied before the flags are
// parsed (they are defaults), so its values are read by profilesFrom.
type profileFlag struct{ values []string }

func (p *profileFlag) String() string     { return strings.Join(p.values, ",") }
func (p *profileFlag) Set(v string) error { p.values = append(p.values, v); return nil }

// configPath finds --config among the arguments before the flags are
// parsed, because the file supplies the defaults the flags then override.
func configPath(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// newFlagSet binds every flag to cfg, whose current values are the defaults.
func newFlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hopscope", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.String("config", "", "YAML `file` with the same settings as the flags (keys are flag names); flags override it")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`address` to listen on")
	fs.StringVar(&cfg.SOCKS5, "socks5", cfg.SOCKS5, "also serve SOCKS5 (RFC 1928 CONNECT, RFC 1929 user/password) on `address`, under the same policy and credentials; empty: off")
	fs.StringVar(&cfg.ConnectPorts, "connect-ports", cfg.ConnectPorts, "`ports` CONNECT may reach: 443,8443, ranges 9000-9100, or *")
	fs.Var(&listFlag{values: &cfg.AllowHost}, "allow-host", "allow only destinations matching `pattern` (repeatable): host, *.example.com, IP, CIDR, optional :port")
	fs.Var(&listFlag{values: &cfg.DenyHost}, "deny-host", "deny destinations matching `pattern` (repeatable); deny wins over allow")
	fs.Var(&listFlag{values: &cfg.NoProxy}, "no-proxy", "the PAC file (/proxy.pac) sends destinations matching `pattern` DIRECT (repeatable, or comma-separated): host patterns as --allow-host, or <local> for names without a dot")
	fs.Var(&listFlag{values: &cfg.AllowClient}, "allow-client", "serve only clients from `CIDR` (repeatable); others get 403")
	fs.BoolVar(&cfg.AllowOpen, "allow-open", cfg.AllowOpen, "allow listening on a non-loopback address without --auth or --allow-client (an open proxy)")
	fs.Var(&listFlag{values: &cfg.Auth}, "auth", "require proxy authentication with `user:pass` (repeatable)")
	fs.StringVar(&cfg.Htpasswd, "htpasswd", cfg.Htpasswd, "require proxy authentication with users from an htpasswd `file` (bcrypt entries)")
	fs.StringVar(&cfg.UpstreamCA, "upstream-ca", cfg.UpstreamCA, "PEM `file` of extra roots to trust for upstream TLS")
	fs.BoolVar(&cfg.InsecureUpstream, "insecure-upstream", cfg.InsecureUpstream, "do not verify upstream TLS certificates (dangerous)")
	fs.StringVar(&cfg.UpstreamProxy, "upstream-proxy", cfg.UpstreamProxy, "parent proxy `URL` (http://[user:pass@]host:port) for all traffic")
	fs.StringVar(&cfg.Pseudonym, "pseudonym", cfg.Pseudonym, "`name` of this proxy in Via and Proxy-Status headers")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "event log `format`: auto (console on a terminal, else json), json, console")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "`level`: debug, info, warn, error")
	fs.StringVar(&cfg.LogFile, "log-file", cfg.LogFile, "write events to `file` instead of standard error")
	addStoreFlags(fs, cfg)
	addInterceptFlags(fs, cfg)
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", cfg.DialTimeout, "`duration` to wait when connecting to a destination (504 after)")
	fs.DurationVar(&cfg.ResponseHeaderTimeout, "response-header-timeout", cfg.ResponseHeaderTimeout, "`duration` to wait for a destination's response headers (504 after); negative: no limit")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", cfg.ReadHeaderTimeout, "`duration` a client may take to send request headers")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close idle client keep-alive connections after `duration`")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "on SIGINT/SIGTERM, let exchanges and tunnels finish for `duration`")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", cfg.MaxHeaderBytes, "largest request or response header block in `bytes`")
	fs.StringVar(&cfg.CADir, "ca-dir", cfg.CADir, "`directory` of the local CA (default $HOPSCOPE_CA_DIR, else ~/.config/hopscope)")
	fs.StringVar(&cfg.CAHost, "ca-host", cfg.CAHost, "serve the CA certificate and install steps at http://`name`/ through the proxy")
	fs.BoolVar(&cfg.MITM, "mitm", cfg.MITM, "bump every TLS tunnel with the local CA (created on first use)")
	fs.Var(&listFlag{values: &cfg.MITMHost}, "mitm-host", "bump only TLS tunnels to hosts matching `pattern` (repeatable)")
	fs.BoolVar(&cfg.MITMHTTP1Only, "mitm-http1-only", cfg.MITMHTTP1Only, "offer bumped clients HTTP/1.1 only (default: h2 first, HTTP/1.1 to the destination)")
	fs.Var(&listFlag{values: &cfg.NoMITMHost}, "no-mitm-host", "never look inside tunnels to hosts matching `pattern` (repeatable): pinned apps")
	fs.StringVar(&cfg.WSRules, "ws-rules", cfg.WSRules, "YAML `file` with a list of WebSocket rules (replaces websocket.rules of --config)")
	fs.Var(&cfg.WSInspectLimit, "ws-inspect-limit", "`size` of each WebSocket message kept for inspection and rules, e.g. 1MiB; 0 keeps none")
	fs.IntVar(&cfg.WSPreview, "ws-preview", cfg.WSPreview, "payload `bytes` shown in ws_message events")
	fs.StringVar(&cfg.WSLog, "ws-log", cfg.WSLog, "ws_message events by `mode`: off, meta (no payload), preview, full")
	fs.Var(&profileFlag{}, "profile", "reproduce a proxy `name` (repeatable): "+ProfileNames+"; explicit settings win over a profile's")
	fs.StringVar(&cfg.Persona, "persona", cfg.Persona, "look like another `product` on the wire: squid or tinyproxy (their Via, headers, status lines and error pages), or empty for hopscope")
	fs.StringVar(&cfg.PersonaVersion, "persona-version", cfg.PersonaVersion, "the `release` the persona names in Via, Server and its pages (6.6 for squid/6.6); default the one measured: squid 5.7, tinyproxy 1.11.1")
	fs.StringVar(&cfg.ForwardPorts, "forward-ports", cfg.ForwardPorts, "`ports` plain requests may reach (squid's Safe_ports); empty: any")
	fs.StringVar(&cfg.Upgrade, "upgrade", cfg.Upgrade, "what to do with Upgrade requests, by `mode`: relay (default), strip-keepalive (squid), strip-close (tinyproxy)")
	fs.Var(&listFlag{values: &cfg.AllowUpgrade}, "allow-upgrade", "with --upgrade strip-*, still relay this `protocol`, matched case-sensitively like squid's http_upgrade_request_protocols (repeatable)")
	fs.BoolVar(&cfg.WebFilter, "web-filter", cfg.WebFilter, "behave like a web filter that breaks WebSockets: rewrite Connection in the 101, hold the client's bytes")
	fs.BoolVar(&cfg.RequireAuth, "require-auth", cfg.RequireAuth, "refuse to start without --auth or --htpasswd (the auth profile)")
	fs.DurationVar(&cfg.TunnelIdleTimeout, "tunnel-idle-timeout", cfg.TunnelIdleTimeout, "cut tunnels and WebSockets idle this long, without a close frame; 0: never")
	fs.Var(&listFlag{values: &cfg.Fault}, "fault", "inject a fault described by `spec` (repeatable): latency=100ms[,jitter=20ms], bandwidth=64KB/s, reset-after=BYTES, ws-drop=RATE, ws-delay=DUR, ws-duplicate=RATE, ws-close=CODE@N, ws-stall-pings; options from=client|server, url=GLOB")
	fs.Uint64Var(&cfg.FaultSeed, "fault-seed", cfg.FaultSeed, "`seed` for probabilistic faults, to repeat a run; 0: random")
	fs.StringVar(&cfg.UI, "ui", cfg.UI, "serve the web UI (live flows, WebSocket messages, HAR) on `address`, e.g. 127.0.0.1:8081; its URL with a secret token is printed at start; also at http://hopscope.ui/ through the proxy")
	fs.StringVar(&cfg.UIAuth, "ui-auth", cfg.UIAuth, "require `user:pass` (basic auth) for the web UI; needed when --ui is not a loopback address")
	fs.StringVar(&cfg.UIHost, "ui-host", cfg.UIHost, "serve the web UI at http://`name`/ through the proxy, to local clients")
	fs.Var(&cfg.WSMaxMessage, "ws-max-message", "close WebSockets whose peer sends a message bigger than `size` (1009), e.g. 16MiB; 0: no limit")
	return fs
}

// Parse builds the effective configuration from the defaults, the config
// file and the flags, in that order of precedence (last wins). On --help it
// prints the usage to stdout and returns flag.ErrHelp; a mistake on the
// command line is a UsageError.
func Parse(args []string, stdout io.Writer) (Config, error) {
	cfg := Default()
	profiles, err := profilesFrom(args, configPath(args))
	if err != nil {
		return cfg, err
	}
	for _, name := range profiles {
		if err := ApplyProfile(&cfg, name); err != nil {
			return cfg, err
		}
	}
	if path := configPath(args); path != "" {
		if err := loadConfigFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	fs := newFlagSet(&cfg, io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return cfg, err
		}
		return cfg, UsageError{Msg: err.Error() + " (see hopscope --help)"}
	}
	if fs.NArg() > 0 {
		if isSubcommand(fs.Arg(0)) {
			return cfg, UsageError{Msg: fmt.Sprintf("unexpected argument %q: a subcommand comes first, its flags after it (hopscope %s ... FLAGS)", fs.Arg(0), fs.Arg(0))}
		}
		return cfg, UsageError{Msg: fmt.Sprintf("unexpected argument %q (see hopscope --help)", fs.Arg(0))}
	}
	return cfg, nil
}

// UsageError is a mistake on the command line or in a setting (exit
// status 2).
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// isSubcommand reports whether word is one the command takes before its
// flags; one found after flags was put in the wrong place.
func isSubcommand(word string) bool {
	switch word {
	case "serve", "ca", "bench", "compare", "record", "replay", "version", "help":
		return true
	}
	return false
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, `hopscope: an intercepting, WebSocket-aware HTTP forward proxy.

Usage:
  hopscope [serve] [flags]   run the proxy (the default)
  hopscope ca init [--force] create the local CA (or replace it with --force)
  hopscope ca path           print the CA directory
  hopscope ca export [--der] write the CA certificate to standard output
  hopscope ca install        trust the CA in the system, NSS (Chromium, Firefox) and Java stores
  hopscope ca uninstall      remove it from those stores
  hopscope bench [flags]     measure a proxy against direct connections (hopscope bench --help)
  hopscope compare --real ADDR --profile NAME
                             the same raw probes through your proxy and the profile, side by side
  hopscope record --out FILE.har [flags]
                             run the proxy and write every flow to FILE.har when it stops
  hopscope replay FILE.har [flags]
                             serve a recording as a mock, or resend it --against a server (hopscope replay --help)
  hopscope version           print the version
  hopscope --help            this text

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		valueName, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if valueName != "" {
			line += " " + valueName
		}
		fmt.Fprintf(out, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(out)
	})
}
