package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// CAStatus says what ProxyOptions did with the local CA.
type CAStatus struct {
	// Dir is the CA directory, when the CA was loaded.
	Dir string
	// Created is set when the CA was made now, on first use.
	Created bool
	// Fingerprint is the CA certificate's SHA-256 fingerprint.
	Fingerprint string
}

// ProxyOptions turns the settings into proxy.Options, reading the files
// they name and, when bumping is on, loading (or on first use creating)
// the local CA.
func (cfg Config) ProxyOptions() (*proxy.Options, CAStatus, error) {
	opts, err := cfg.proxyOptions()
	if err != nil {
		return nil, CAStatus{}, err
	}
	if !opts.Policy.Bump.Enabled() {
		// Not bumping: an existing CA is still served at the CA page, but
		// none is created.
		if dir, err := certs.Dir(cfg.CADir); err == nil {
			if ca, err := certs.Load(dir); err == nil {
				opts.CA = ca
				return opts, CAStatus{Dir: dir, Fingerprint: ca.Fingerprint()}, nil
			}
		}
		return opts, CAStatus{}, nil
	}
	ca, err := cfg.loadCA(opts)
	return opts, ca, err
}

// proxyOptions turns the settings into proxy.Options, reading the files
// they name.
func (cfg Config) proxyOptions() (*proxy.Options, error) {
	pol := policy.New()
	ports, err := policy.ParsePortSet(cfg.ConnectPorts)
	if err != nil {
		return nil, UsageError{Msg: "--connect-ports: " + err.Error()}
	}
	pol.ConnectPorts = ports
	for _, s := range cfg.AllowHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, UsageError{Msg: "--allow-host: " + err.Error()}
		}
		pol.Allow = append(pol.Allow, p)
	}
	for _, s := range cfg.DenyHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, UsageError{Msg: "--deny-host: " + err.Error()}
		}
		pol.Deny = append(pol.Deny, p)
	}
	for _, s := range cfg.AllowClient {
		p, err := policy.ParseClientPrefix(s)
		if err != nil {
			return nil, UsageError{Msg: "--allow-client: " + err.Error()}
		}
		pol.Clients = append(pol.Clients, p)
	}
	noProxy, plainNames, err := parseNoProxy(cfg.NoProxy)
	if err != nil {
		return nil, err
	}
	creds := proxy.NewCredentials()
	for _, pair := range cfg.Auth {
		if err := creds.AddPair(pair); err != nil {
			return nil, UsageError{Msg: "--auth: " + err.Error()}
		}
	}
	if cfg.Htpasswd != "" {
		data, err := os.ReadFile(cfg.Htpasswd)
		if err != nil {
			return nil, fmt.Errorf("--htpasswd: %w", err)
		}
		if err := creds.AddHtpasswd(data, cfg.Htpasswd); err != nil {
			return nil, fmt.Errorf("--htpasswd: %w", err)
		}
	}
	var extraRoots []byte
	if cfg.UpstreamCA != "" {
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		extraRoots = pem
	}
	tlsConf, err := mitm.UpstreamConfig(extraRoots, cfg.InsecureUpstream)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca %s: %w", cfg.UpstreamCA, err)
	}
	pol.Bump.All = cfg.MITM
	for _, s := range cfg.MITMHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, UsageError{Msg: "--mitm-host: " + err.Error()}
		}
		pol.Bump.Hosts = append(pol.Bump.Hosts, p)
	}
	for _, s := range cfg.NoMITMHost {
		p, err := policy.ParseHostPattern(s)
		if err != nil {
			return nil, UsageError{Msg: "--no-mitm-host: " + err.Error()}
		}
		pol.Bump.Never = append(pol.Bump.Never, p)
	}
	if cfg.ForwardPorts != "" {
		fp, err := policy.ParsePortSet(cfg.ForwardPorts)
		if err != nil {
			return nil, UsageError{Msg: "--forward-ports: " + err.Error()}
		}
		pol.ForwardPorts = fp
	}
	if cfg.RequireAuth && creds.Empty() {
		return nil, UsageError{Msg: "the auth profile (--require-auth) needs credentials: add --auth USER:PASS or --htpasswd FILE"}
	}
	var faults []policy.Fault
	for _, spec := range cfg.Fault {
		f, err := policy.ParseFault(spec)
		if err != nil {
			return nil, UsageError{Msg: "--fault: " + err.Error()}
		}
		faults = append(faults, f)
	}
	upgrades := map[string]string{"": proxy.UpgradeRelay, "relay": proxy.UpgradeRelay,
		"strip-keepalive": proxy.UpgradeStripKeepAlive, "strip-close": proxy.UpgradeStripClose}
	upgrade, ok := upgrades[cfg.Upgrade]
	if !ok {
		return nil, UsageError{Msg: fmt.Sprintf("--upgrade %q: use relay, strip-keepalive or strip-close", cfg.Upgrade)}
	}
	if cfg.Persona != "" && cfg.Persona != "squid" && cfg.Persona != "tinyproxy" {
		return nil, UsageError{Msg: fmt.Sprintf("--persona %q: use squid or tinyproxy, or leave it empty", cfg.Persona)}
	}
	if strings.ContainsAny(cfg.PersonaVersion, " ,;()\"\t\r\n") {
		return nil, UsageError{Msg: fmt.Sprintf("--persona-version %q: give a release like 6.6, one token", cfg.PersonaVersion)}
	}
	wsOpts, err := cfg.webSocketOptions()
	if err != nil {
		return nil, err
	}
	opts := &proxy.Options{
		WebSocket:             wsOpts,
		Persona:               proxy.Persona{Squid: cfg.Persona == "squid", Tinyproxy: cfg.Persona == "tinyproxy", Version: cfg.PersonaVersion},
		Upgrades:              upgrade,
		AllowUpgrade:          cfg.AllowUpgrade,
		WebFilter:             cfg.WebFilter,
		TunnelIdleTimeout:     cfg.TunnelIdleTimeout,
		Faults:                faults,
		FaultSeed:             cfg.FaultSeed,
		Policy:                pol,
		Credentials:           creds,
		Pseudonym:             cfg.Pseudonym,
		UpstreamTLS:           tlsConf,
		DialTimeout:           cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ReadHeaderTimeout:     cfg.ReadHeaderTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		MaxHeaderBytes:        cfg.MaxHeaderBytes,
		CAHost:                cfg.CAHost,
		NoProxy:               noProxy,
		NoProxyPlainNames:     plainNames,
		BumpHTTP1Only:         cfg.MITMHTTP1Only,
		UIHost:                cfg.UIHost,
	}
	if strings.ContainsAny(cfg.Pseudonym, " ,;\"\t") || cfg.Pseudonym == "" {
		return nil, UsageError{Msg: fmt.Sprintf("--pseudonym %q: must be one token without spaces, commas or quotes", cfg.Pseudonym)}
	}
	if cfg.Persona == "squid" && cfg.Pseudonym == Default().Pseudonym {
		// squid names its host in Via; the proxy fills it in.
		opts.Pseudonym = ""
	}
	if cfg.Persona == "tinyproxy" && cfg.Pseudonym == Default().Pseudonym {
		opts.Pseudonym = "tinyproxy" // the stock config's ViaProxyName
	}
	if cfg.UpstreamProxy != "" {
		u, err := url.Parse(cfg.UpstreamProxy)
		if err != nil || u.Host == "" {
			return nil, UsageError{Msg: fmt.Sprintf("--upstream-proxy %q: give a URL like http://host:3128", cfg.UpstreamProxy)}
		}
		opts.UpstreamProxy = u
	}
	return opts, nil
}

// parseNoProxy reads --no-proxy: host patterns, each flag value possibly
// a comma-separated list as in NO_PROXY, and "<local>" for plain names.
func parseNoProxy(values []string) ([]policy.HostPattern, bool, error) {
	var out []policy.HostPattern
	plain := false
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			switch {
			case item == "":
			case strings.EqualFold(item, "<local>"):
				plain = true
			default:
				p, err := policy.ParseHostPattern(strings.TrimPrefix(item, "."))
				if strings.HasPrefix(item, ".") && err == nil {
					// NO_PROXY's ".example.com" means the domain and below.
					wild, werr := policy.ParseHostPattern("*" + item)
					if werr != nil {
						return nil, false, UsageError{Msg: "--no-proxy: " + werr.Error()}
					}
					out = append(out, wild)
				}
				if err != nil {
					return nil, false, UsageError{Msg: "--no-proxy: " + err.Error()}
				}
				out = append(out, p)
			}
		}
	}
	return out, plain, nil
}

// CheckOpenProxy refuses to listen (HTTP or SOCKS5) on a non-loopback
// address with neither authentication nor a client allowlist: that is an
// open proxy anyone on the network (or the internet) can relay through.
func (cfg Config) CheckOpenProxy() error {
	if cfg.AllowOpen || len(cfg.Auth) > 0 || cfg.Htpasswd != "" || len(cfg.AllowClient) > 0 {
		return nil
	}
	if err := checkLoopback("--listen", cfg.Listen); err != nil {
		return err
	}
	if cfg.SOCKS5 != "" {
		return checkLoopback("--socks5", cfg.SOCKS5)
	}
	return nil
}

func checkLoopback(flagName, listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return notHostPort(flagName, listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Unmap().IsLoopback() {
		return nil
	}
	return UsageError{Msg: fmt.Sprintf("refusing to listen on %s (%s): it is not a loopback address, and with neither --auth, --htpasswd nor --allow-client anyone who can reach it could use hopscope as an open proxy. "+
		"Add credentials or a client range, or pass --allow-open if that is what you want.", listen, flagName)}
}

func (cfg Config) loadCA(opts *proxy.Options) (CAStatus, error) {
	dir, err := certs.Dir(cfg.CADir)
	if err != nil {
		return CAStatus{}, err
	}
	ca, created, err := certs.LoadOrCreate(dir)
	if err != nil {
		return CAStatus{}, fmt.Errorf("loading the CA for bumping: %w", err)
	}
	opts.CA = ca
	opts.Issuer = mitm.NewIssuer(ca, mitm.IssuerOptions{})
	return CAStatus{Dir: dir, Created: created, Fingerprint: ca.Fingerprint()}, nil
}

// notHostPort says that a listen address lacks its host or port, with the
// address the person probably meant: "--ui 8081" is 127.0.0.1:8081.
func notHostPort(flagName, value string, err error) UsageError {
	example := "127.0.0.1:8080"
	if _, perr := strconv.ParseUint(value, 10, 16); perr == nil {
		example = "127.0.0.1:" + value
	}
	return UsageError{Msg: fmt.Sprintf("%s %q: give host:port, such as %s %s (%v)", flagName, value, flagName, example, err)}
}
