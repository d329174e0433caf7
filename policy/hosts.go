package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// HostPattern matches a destination. It is written as one of
//
//	example.com        that host name exactly (case-insensitive, trailing dot ignored)
//	*.example.com      any name below example.com, but not example.com itself
//	192.0.2.7, ::1     that address
//	10.0.0.0/8         any address in that prefix
//
// optionally followed by ":PORT" (IPv6 addresses and prefixes in brackets:
// "[::1]:8080", "[fd00::]/8:443"), which limits the pattern to that port.
// Patterns naming addresses match the address a name resolved to, so they are
// checked again when the proxy dials.
type HostPattern struct {
	text string
	// allowRule and denyRule are the rule labels decisions carry, built
	// once here rather than per decision.
	allowRule, denyRule string
	name                string // exact name, or the suffix after "*." when wildcard
	wild                bool
	prefix              netip.Prefix // valid for address and prefix patterns
	port                uint16       // 0: any port
}

// ParseHostPattern parses one host rule pattern.
func ParseHostPattern(s string) (HostPattern, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return HostPattern{}, fmt.Errorf("empty host pattern")
	}
	p := HostPattern{text: orig, allowRule: "allow-host=" + orig, denyRule: "deny-host=" + orig}
	hostPart, port, err := splitPatternPort(s)
	if err != nil {
		return HostPattern{}, fmt.Errorf("host pattern %q: %w", orig, err)
	}
	p.port = port
	if strings.Contains(hostPart, "/") {
		pfx, err := netip.ParsePrefix(hostPart)
		if err != nil {
			return HostPattern{}, fmt.Errorf("host pattern %q: not a CIDR prefix: %w", orig, err)
		}
		p.prefix = pfx.Masked()
		return p, nil
	}
	if addr, err := netip.ParseAddr(hostPart); err == nil {
		addr = addr.Unmap()
		p.prefix = netip.PrefixFrom(addr, addr.BitLen())
		return p, nil
	}
	name := normalizeName(hostPart)
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		p.wild, name = true, rest
	}
	if err := checkName(name); err != nil {
		return HostPattern{}, fmt.Errorf("host pattern %q: %w", orig, err)
	}
	p.name = name
	return p, nil
}

// splitPatternPort separates an optional ":port" from a pattern. A bare IPv6
// address has colons of its own, so a port is only taken from after "]" or
// from a pattern with exactly one colon.
func splitPatternPort(s string) (string, uint16, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("missing ] after IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if strings.HasPrefix(rest, "/") { // "[fd00::]/8" or "[fd00::]/8:443"
			bits, portText, hasPort := strings.Cut(rest[1:], ":")
			host += "/" + bits
			if !hasPort {
				return host, 0, nil
			}
			rest = ":" + portText
		}
		if rest == "" {
			return host, 0, nil
		}
		portText, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		port, err := parsePort(portText)
		return host, port, err
	}
	if strings.Count(s, ":") != 1 {
		return s, 0, nil
	}
	host, portText, _ := strings.Cut(s, ":")
	port, err := parsePort(portText)
	return host, port, err
}

func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func checkName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host name must have 1 to 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host name %q has an empty or over-long label", name)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host name %q has the character %q", name, c)
			}
		}
	}
	return nil
}

// PatternParts spell out what a HostPattern matches, for code that must
// express the same match in another language (the PAC file). Exactly one
// of Name and Prefix is set.
type PatternParts struct {
	// Name is the normalised host name; for a wildcard, the part after "*.".
	Name     string
	Wildcard bool
	// Prefix is set for address and prefix patterns (an address is a
	// full-length prefix).
	Prefix netip.Prefix
	// Port limits the pattern to one port; 0 means any.
	Port uint16
}

// Parts returns what the pattern matches.
func (p HostPattern) Parts() PatternParts {
	return PatternParts{Name: p.name, Wildcard: p.wild, Prefix: p.prefix, Port: p.port}
}

// String returns the pattern as written.
func (p HostPattern) String() string { return p.text }

// namesAddress reports whether the pattern is about addresses rather than names.
func (p HostPattern) namesAddress() bool { return p.prefix.IsValid() }

// matchName reports whether the pattern matches host name name (normalized) on port.
func (p HostPattern) matchName(name string, port uint16) bool {
	if p.namesAddress() || (p.port != 0 && p.port != port) {
		return false
	}
	if p.wild {
		return strings.HasSuffix(name, "."+p.name)
	}
	return name == p.name
}

// matchAddr reports whether the pattern matches address addr on port.
func (p HostPattern) matchAddr(addr netip.Addr, port uint16) bool {
	if !p.namesAddress() || (p.port != 0 && p.port != port) {
		return false
	}
	return p.prefix.Contains(addr.Unmap())
}

// SplitHostPort splits a request target "host:port" into a normalized host and
// a port. IPv6 literals keep no brackets. It is stricter than net.SplitHostPort:
// the port must be a number from 1 to 65535.
func SplitHostPort(target string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(target)
	if err != nil {
		return "", 0, fmt.Errorf("target %q is not host:port: %w", target, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("target %q has no valid port (1-65535)", target)
	}
	if h == "" {
		return "", 0, fmt.Errorf("target %q has no host", target)
	}
	return normalizeName(h), uint16(n), nil
}
