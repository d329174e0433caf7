package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hopscope/hopscope/policy"
)

// ProfileNames lists the profiles --profile accepts.
const ProfileNames = "squid, tinyproxy (alias strip-upgrade), web-filter, ssl-inspect, auth, idle-timeout=DURATION"

// ApplyProfile sets the defaults of a named profile: a reproduction of a
// proxy that real companies run, with its known effect on WebSockets.
// Explicit settings (config file, flags) are applied after it and win.
func ApplyProfile(cfg *Config, name string) error {
	kind, value, hasValue := strings.Cut(strings.TrimSpace(name), "=")
	if hasValue && kind != "idle-timeout" {
		return UsageError{Msg: fmt.Sprintf("--profile %q: %s takes no value", name, kind)}
	}
	switch kind {
	case "squid":
		// squid 5.7 stock rules: CONNECT only to SSL_ports (443), plain
		// requests only to Safe_ports, Upgrade silently dropped.
		cfg.Persona = "squid"
		cfg.ConnectPorts = policy.DefaultConnectPorts
		cfg.ForwardPorts = policy.SquidSafePorts
		cfg.Upgrade = "strip-keepalive"
	case "web-filter":
		cfg.WebFilter = true
	case "tinyproxy", "strip-upgrade":
		// tinyproxy 1.11.1 stock rules: no ConnectPort lines, so CONNECT
		// to every port; Upgrade stripped, Connection: close upstream; a
		// 70 KB header passes. strip-upgrade is the profile's old name,
		// kept so existing command lines keep working.
		cfg.Persona = "tinyproxy"
		cfg.ConnectPorts = "*"
		cfg.Upgrade = "strip-close"
		cfg.MaxHeaderBytes = 1 << 20
	case "ssl-inspect":
		cfg.MITM = true
	case "auth":
		cfg.RequireAuth = true
	case "idle-timeout":
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return UsageError{Msg: fmt.Sprintf("--profile %q: give a duration, like idle-timeout=30s", name)}
		}
		cfg.TunnelIdleTimeout = d
	default:
		return UsageError{Msg: fmt.Sprintf("--profile %q: unknown profile; use %s", name, ProfileNames)}
	}
	cfg.Profile = append(cfg.Profile, name)
	return nil
}

// profilesFrom finds the profiles to apply before anything else: from
// --profile flags (which win), else from the config file's profile key.
func profilesFrom(args []string, configFile string) ([]string, error) {
	var names []string
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "profile" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		names = append(names, splitList(value)...)
	}
	if len(names) > 0 || configFile == "" {
		return names, nil
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var file struct {
		Profile []string `yaml:"profile"`
	}
	// Unknown keys are the strict decoder's business, later.
	_ = yaml.NewDecoder(bytes.NewReader(data)).Decode(&file)
	for _, p := range file.Profile {
		names = append(names, splitList(p)...)
	}
	return names, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
