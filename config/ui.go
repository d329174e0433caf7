package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// UISettings are the checked web UI settings.
type UISettings struct {
	// Addr is where the UI listens; "" when only the proxy's magic host
	// serves it.
	Addr string
	// Loopback is set when Addr is a loopback address.
	Loopback bool
	// User and Password guard the UI with basic auth; "" none.
	User, Password string
	// Host is the UI's name through the proxy.
	Host string
}

// UISettings checks --ui, --ui-auth and --ui-host. The UI shows every
// secret that crossed the proxy, so a non-loopback --ui without --ui-auth
// is refused.
func (cfg Config) UISettings() (UISettings, error) {
	out := UISettings{Addr: cfg.UI, Host: cfg.UIHost}
	if cfg.UIAuth != "" {
		user, pass, ok := strings.Cut(cfg.UIAuth, ":")
		if !ok || user == "" || pass == "" {
			return out, UsageError{Msg: fmt.Sprintf("--ui-auth %q: use user:pass", cfg.UIAuth)}
		}
		out.User, out.Password = user, pass
	}
	if cfg.UI == "" {
		return out, nil
	}
	host, _, err := net.SplitHostPort(cfg.UI)
	if err != nil {
		return out, notHostPort("--ui", cfg.UI, err)
	}
	if host == "localhost" {
		out.Loopback = true
	} else if addr, err := netip.ParseAddr(host); err == nil && addr.Unmap().IsLoopback() {
		out.Loopback = true
	}
	if !out.Loopback && out.User == "" {
		return out, UsageError{Msg: fmt.Sprintf("refusing to serve the web UI on %s: it is not a loopback address, and the UI shows every cookie, password and payload that crossed the proxy. Add --ui-auth user:pass, or use --ui 127.0.0.1:8081.", cfg.UI)}
	}
	return out, nil
}
