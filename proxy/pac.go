package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"text/template"

	"github.com/hopscope/hopscope/policy"
)

// PAC paths: /proxy.pac is what people type, /wpad.dat what WPAD
// discovery (DHCP option 252, DNS "wpad") fetches.
const (
	pacPath  = "/proxy.pac"
	wpadPath = "/wpad.dat"
)

// pacRule is one bypass pattern as the PAC script's matcher reads it.
type pacRule struct {
	// Name is an exact host name, or with Wild the domain names below.
	Name string `json:"name,omitempty"`
	Wild bool   `json:"wild,omitempty"`
	// Net and Bits are an address prefix; V6 says which family.
	Net  string `json:"net,omitempty"`
	Bits int    `json:"bits,omitempty"`
	V6   bool   `json:"v6,omitempty"`
	// Port limits the rule to one port; 0 any.
	Port uint16 `json:"port,omitempty"`
}

// loopbackBypass is always in the PAC: a proxy cannot reach the client's
// own loopback, and browsers bypass it anyway.
var loopbackBypass = []pacRule{
	{Name: "localhost"}, {Name: "localhost", Wild: true},
	{Net: "127.0.0.0", Bits: 8}, {Net: "::1", Bits: 128, V6: true},
}

func pacRules(patterns []policy.HostPattern) []pacRule {
	rules := append([]pacRule(nil), loopbackBypass...)
	for _, p := range patterns {
		parts := p.Parts()
		r := pacRule{Name: parts.Name, Wild: parts.Wildcard, Port: parts.Port}
		if parts.Prefix.IsValid() {
			r = pacRule{Net: parts.Prefix.Addr().String(), Bits: parts.Prefix.Bits(), V6: parts.Prefix.Addr().Is6(), Port: parts.Port}
		}
		rules = append(rules, r)
	}
	return rules
}

// servePAC answers /proxy.pac: a proxy auto-config script generated from
// the running settings, naming the proxy by the address the client used
// to fetch it, so the same URL works from this machine and from a VM.
func (s *Server) servePAC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "hopscope: the PAC file is fetched with GET", http.StatusMethodNotAllowed)
		return
	}
	proxyAddr := reachedAs(r)
	ret := "PROXY " + proxyAddr
	if socks, ok := socksAddrFor(s.socks.firstAddr(), proxyAddr); ok {
		ret += "; SOCKS5 " + socks
	}
	rules, _ := json.Marshal(pacRules(s.opts.NoProxy))
	ret, _ = marshalString(ret)
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	// Browsers cache PAC files hard; a changed policy should show on reload.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_ = pacTemplate.Execute(w, pacData{Proxy: ret, Rules: string(rules), PlainNames: s.opts.NoProxyPlainNames, URL: "http://" + proxyAddr + pacPath})
}

func marshalString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// reachedAs is the proxy's address as the client reached it: the Host
// header (with the port the client used, 80 when it named none), or the
// local address of the connection when Host is missing or could not be
// a host (it ends up in a script).
func reachedAs(r *http.Request) string {
	host := r.Host
	if host != "" && validAuthority(host) {
		if _, _, err := net.SplitHostPort(host); err != nil {
			return net.JoinHostPort(strings.Trim(host, "[]"), "80")
		}
		return host
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return addr.String()
	}
	return "127.0.0.1:8080"
}

// validAuthority accepts host names, IPv4 and bracketed IPv6 addresses with
// an optional port, and nothing that could break out of a JS string.
func validAuthority(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// socksAddrFor names the SOCKS5 listener for a client that reached the
// HTTP listener as proxyAddr: a listener on all addresses is reached by
// the same host, one on a specific address by that address. A loopback
// listener is left out for a client that came from elsewhere: it could
// not reach it.
func socksAddrFor(socks netip.AddrPort, proxyAddr string) (string, bool) {
	if !socks.IsValid() {
		return "", false
	}
	host, _, _ := net.SplitHostPort(proxyAddr)
	if socks.Addr().IsUnspecified() {
		return net.JoinHostPort(host, strconv.Itoa(int(socks.Port()))), true
	}
	if socks.Addr().IsLoopback() && !isLoopbackName(host) {
		return "", false
	}
	return socks.String(), true
}

func isLoopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

type pacData struct {
	Proxy      string // a JS string literal
	Rules      string // a JS array literal
	PlainNames bool
	URL        string
}

// pacTemplate is the script. Its matcher follows policy.HostPattern: names
// exactly or (wild) strictly below a domain, address prefixes on IP
// literal hosts only (the script never resolves names, which would stall
// the browser), an optional port. It uses only what every PAC engine has.
var pacTemplate = template.Must(template.New("pac").Parse(`// Proxy auto-config generated by hopscope from its running settings.
// Served at {{.URL}}; loopback and --no-proxy destinations go DIRECT,
// everything else through hopscope (no fallback to DIRECT).
var hopscopeProxy = {{.Proxy}};
var hopscopeBypass = {{.Rules}};
var hopscopePlainNames = {{.PlainNames}};

function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase();
  if (h.charAt(0) == "[") h = h.substring(1, h.length - 1);
  if (h.length > 1 && h.charAt(h.length - 1) == ".") h = h.substring(0, h.length - 1);
  if (hopscopePlainNames && isPlainHostName(h) && h.indexOf(":") < 0) return "DIRECT";
  var port = hopscopePort(url);
  for (var i = 0; i < hopscopeBypass.length; i++) {
    if (hopscopeMatches(hopscopeBypass[i], h, port)) return "DIRECT";
  }
  return hopscopeProxy;
}

function hopscopeMatches(rule, h, port) {
  if (rule.port && rule.port != port) return false;
  if (rule.name) return rule.wild ? dnsDomainIs(h, "." + rule.name) : h == rule.name;
  var want = rule.v6 ? hopscopeV6(rule.net) : hopscopeV4(rule.net);
  var got = rule.v6 ? hopscopeV6(h) : hopscopeV4(h);
  if (!want || !got) return false;
  var width = rule.v6 ? 16 : 8;
  var bits = rule.bits;
  for (var i = 0; i < want.length && bits > 0; i++) {
    var take = bits < width ? bits : width;
    var shift = width - take;
    if ((want[i] >> shift) != (got[i] >> shift)) return false;
    bits -= take;
  }
  return true;
}

// hopscopePort is the URL's port, or its scheme's default.
function hopscopePort(url) {
  var m = /^([a-z][a-z0-9+.-]*):\/\/(?:[^\/@]*@)?(\[[^\]]*\]|[^\/:?#]*)(?::(\d+))?/i.exec(url);
  if (!m) return 0;
  if (m[3]) return parseInt(m[3], 10);
  var scheme = m[1].toLowerCase();
  if (scheme == "https" || scheme == "wss") return 443;
  if (scheme == "ftp") return 21;
  return 80;
}

// hopscopeV4 parses a dotted quad into 4 numbers, or returns null.
function hopscopeV4(s) {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) return null;
  var parts = s.split(".");
  for (var i = 0; i < 4; i++) {
    parts[i] = parseInt(parts[i], 10);
    if (parts[i] > 255) return null;
  }
  return parts;
}

// hopscopeV6 parses an IPv6 address into 8 numbers, or returns null.
function hopscopeV6(s) {
  if (s.indexOf(":") < 0) return null;
  var halves = s.split("::");
  if (halves.length > 2) return null;
  var head = halves[0] ? halves[0].split(":") : [];
  var tail = halves.length == 2 && halves[1] ? halves[1].split(":") : [];
  var last = tail.length ? tail : head;
  if (last.length && last[last.length - 1].indexOf(".") >= 0) {
    var v4 = hopscopeV4(last.pop());
    if (!v4) return null;
    last.push(((v4[0] << 8) | v4[1]).toString(16), ((v4[2] << 8) | v4[3]).toString(16));
  }
  var fill = 8 - head.length - tail.length;
  if (halves.length == 1 ? fill != 0 : fill < 1) return null;
  var groups = head.slice(0);
  for (var i = 0; i < fill; i++) groups.push("0");
  groups = groups.concat(tail);
  for (var j = 0; j < 8; j++) {
    if (!/^[0-9a-f]{1,4}$/.test(groups[j])) return null;
    groups[j] = parseInt(groups[j], 16);
  }
  return groups;
}
`))
