package policy

// BumpRules decide which tunnels hopscope opens up (TLS bumping with its
// CA, or reading plaintext HTTP inside a tunnel). The zero value bumps no
// TLS tunnel.
type BumpRules struct {
	// All bumps every TLS tunnel (--mitm).
	All bool
	// Hosts bumps tunnels to matching hosts (--mitm-host).
	Hosts []HostPattern
	// Never leaves matching tunnels untouched, spliced byte for byte,
	// whatever the other rules say (--no-mitm-host): for pinned apps.
	Never []HostPattern
}

// Enabled reports whether any TLS tunnel may be bumped.
func (b BumpRules) Enabled() bool { return b.All || len(b.Hosts) > 0 }

// Inspect reports whether hopscope may look inside a tunnel to host:port at
// all; false means splice it untouched.
func (b BumpRules) Inspect(host string, port uint16) bool {
	return !matchAny(b.Never, host, port)
}

// BumpTLS reports whether a TLS tunnel to host:port is bumped.
func (b BumpRules) BumpTLS(host string, port uint16) bool {
	if !b.Inspect(host, port) {
		return false
	}
	return b.All || matchAny(b.Hosts, host, port)
}

// Match reports whether the pattern matches host (a name or an IP literal)
// on port. Address patterns match only IP literals here.
func (p HostPattern) Match(host string, port uint16) bool {
	if addr, ok := parseIPLiteral(host); ok {
		return p.matchAddr(addr, port)
	}
	return p.matchName(normalizeName(host), port)
}

func matchAny(patterns []HostPattern, host string, port uint16) bool {
	for _, p := range patterns {
		if p.Match(host, port) {
			return true
		}
	}
	return false
}
