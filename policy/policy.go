// Package policy decides whether the proxy may carry a request: which ports a
// CONNECT may reach, which destination hosts are allowed or denied, and which
// clients may use the proxy at all. It does no I/O and keeps no state beyond
// the rules it was built from, so every decision can be tested as a table.
package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is what a client asked the proxy to do.
type Kind int

const (
	// Forward is a plain HTTP request in absolute form (GET http://host/...).
	Forward Kind = iota
	// Connect is a CONNECT request for a tunnel.
	Connect
)

func (k Kind) String() string {
	if k == Connect {
		return "CONNECT"
	}
	return "forward"
}

// Request is what a decision is made on.
type Request struct {
	Kind Kind
	// Host is the destination as the client named it: a host name or an IP
	// literal without brackets.
	Host string
	Port uint16
	// Addr is the address the host resolved to, once the proxy dials it. The
	// zero value means "not resolved yet": rules that name addresses are then
	// only checked against Host when Host is itself an IP literal.
	Addr netip.Addr
}

// Target returns the request's destination as host:port.
func (r Request) Target() string {
	host := r.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(r.Port))
}

// Decision is the outcome of Policy.Decide. When Allow is false the other
// fields say why, in words meant for the person whose request was refused.
type Decision struct {
	Allow bool
	// Rule names the rule that decided, as written on the command line
	// ("connect-ports=443", "deny-host=*.internal", "allow-host").
	Rule string
	// Reason says in a sentence what the rule found.
	Reason string
	// Fix says, as a phrase that completes "To allow it, ...", which flag
	// would let the request through.
	Fix string
	// ProxyStatus is the RFC 9209 error type for the Proxy-Status header.
	ProxyStatus string
}

// Policy is a set of destination rules. The zero value allows everything
// except CONNECT, whose port list is empty; use New for the defaults.
type Policy struct {
	// ConnectPorts are the ports a CONNECT may reach (squid's SSL_ports).
	ConnectPorts PortSet
	// ForwardPorts, when set, are the only ports plain requests may reach
	// (squid's Safe_ports). The zero value allows every port.
	ForwardPorts PortSet
	// Allow, when not empty, is the only set of destinations allowed.
	Allow []HostPattern
	// Deny rules win over Allow rules.
	Deny []HostPattern
	// Clients, when not empty, are the client address ranges that may use
	// the proxy at all.
	Clients []netip.Prefix
	// Bump decides which tunnels are opened up.
	Bump BumpRules
}

// DefaultConnectPorts is squid's stock SSL_ports rule: CONNECT only to 443.
const DefaultConnectPorts = "443"

// New returns a policy with the default CONNECT ports and no host rules.
func New() *Policy {
	return &Policy{ConnectPorts: MustParsePortSet(DefaultConnectPorts)}
}

// Decide says whether req may proceed. Call it once when the request arrives
// (Addr unset) and again when the proxy has resolved the destination.
func (p *Policy) Decide(req Request) Decision {
	if req.Kind == Connect && !p.ConnectPorts.Contains(req.Port) {
		return Decision{
			Rule:        "connect-ports=" + p.ConnectPorts.String(),
			Reason:      fmt.Sprintf("port %d is not in the CONNECT port list %s", req.Port, p.ConnectPorts),
			Fix:         fmt.Sprintf("start hopscope with --connect-ports %s,%d", p.ConnectPorts, req.Port),
			ProxyStatus: "http_request_denied",
		}
	}
	if req.Kind == Forward && !p.ForwardPorts.IsZero() && !p.ForwardPorts.Contains(req.Port) {
		return Decision{
			Rule:        "forward-ports=" + p.ForwardPorts.String(),
			Reason:      fmt.Sprintf("port %d is not in the port list %s for plain requests", req.Port, p.ForwardPorts),
			Fix:         fmt.Sprintf("start hopscope with --forward-ports %s,%d", p.ForwardPorts, req.Port),
			ProxyStatus: "http_request_denied",
		}
	}
	name, addr := req.Host, req.Addr
	if lit, ok := parseIPLiteral(req.Host); ok {
		name, addr = "", lit.Unmap()
	}
	for _, rule := range p.Deny {
		if (name != "" && rule.matchName(name, req.Port)) || (addr.IsValid() && rule.matchAddr(addr, req.Port)) {
			d := Decision{
				Rule:        rule.denyRule,
				Reason:      fmt.Sprintf("%s matches the deny rule %s", describe(req, name, addr), rule),
				Fix:         "remove the rule --deny-host " + rule.String(),
				ProxyStatus: "http_request_denied",
			}
			if rule.namesAddress() {
				d.ProxyStatus = "destination_ip_prohibited"
			}
			return d
		}
	}
	if len(p.Allow) == 0 {
		return Decision{Allow: true}
	}
	undecided := false
	for _, rule := range p.Allow {
		if (name != "" && rule.matchName(name, req.Port)) || (addr.IsValid() && rule.matchAddr(addr, req.Port)) {
			return Decision{Allow: true, Rule: rule.allowRule}
		}
		// An address rule may still match once the name is resolved.
		undecided = undecided || (rule.namesAddress() && !addr.IsValid())
	}
	if undecided {
		return Decision{Allow: true}
	}
	return Decision{
		Rule:        "allow-host",
		Reason:      fmt.Sprintf("%s matches no --allow-host rule, and with allow rules present everything else is denied", describe(req, name, addr)),
		Fix:         "start hopscope with --allow-host " + req.Host + " as well",
		ProxyStatus: "http_request_denied",
	}
}

// parseIPLiteral parses host as an IP address. Host names are told apart
// first: netip.ParseAddr builds an error value for each of them, which
// would cost an allocation per decision.
func parseIPLiteral(host string) (netip.Addr, bool) {
	if host == "" {
		return netip.Addr{}, false
	}
	if last := host[len(host)-1]; !strings.Contains(host, ":") && (last < '0' || last > '9') {
		return netip.Addr{}, false // a name: IPv4 ends in a digit, IPv6 has colons
	}
	addr, err := netip.ParseAddr(host)
	return addr, err == nil
}

func describe(req Request, name string, addr netip.Addr) string {
	if name != "" && addr.IsValid() {
		return fmt.Sprintf("%s (resolved to %s)", req.Target(), addr)
	}
	return req.Target()
}

// AllowClient reports whether a client at addr may use the proxy.
func (p *Policy) AllowClient(addr netip.Addr) bool {
	if len(p.Clients) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, pfx := range p.Clients {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// ParseClientPrefix parses an --allow-client value: a CIDR prefix or a single
// address.
func ParseClientPrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("client range %q: %w", s, err)
		}
		return pfx.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("client range %q is neither a CIDR prefix nor an address", s)
	}
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// Summary describes the policy in a few strings, for the listen event.
func (p *Policy) Summary() map[string]string {
	join := func(ps []HostPattern) string {
		parts := make([]string, len(ps))
		for i, r := range ps {
			parts[i] = r.String()
		}
		return strings.Join(parts, ",")
	}
	clients := make([]string, len(p.Clients))
	for i, c := range p.Clients {
		clients[i] = c.String()
	}
	mitm := join(p.Bump.Hosts)
	if p.Bump.All {
		mitm = "*"
	}
	return map[string]string{
		"connect_ports": p.ConnectPorts.String(),
		"forward_ports": p.ForwardPorts.String(),
		"allow_host":    join(p.Allow),
		"deny_host":     join(p.Deny),
		"allow_client":  strings.Join(clients, ","),
		"mitm_host":     mitm,
		"no_mitm_host":  join(p.Bump.Never),
	}
}
