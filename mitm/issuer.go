// Package mitm owns hopscope's TLS: it mints leaf certificates from the
// local CA for the hosts it bumps, caches them, and builds the tls.Configs
// for both sides of a bumped connection.
package mitm

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hopscope/hopscope/certs"
)

// MaxLeafValidity is the longest validity browsers accept for a leaf
// certificate (CA/Browser Forum baseline requirements).
const MaxLeafValidity = 397 * 24 * time.Hour

// renewBefore keeps a cached leaf from being served in its last hour, so a
// handshake never gets a certificate that expires under it.
const renewBefore = time.Hour

// IssuerOptions tune an Issuer. The zero value is the default.
type IssuerOptions struct {
	// CacheSize bounds the number of cached leaves. Default 1024.
	CacheSize int
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Issuer mints leaf certificates signed by the CA. Each name is minted once
// even when many handshakes ask for it at the same moment (singleflight),
// and kept in a bounded LRU cache that never serves an expired leaf.
type Issuer struct {
	ca    *certs.CA
	now   func() time.Time
	max   int
	group singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	index map[string]*list.Element

	minted atomic.Uint64
}

type cacheEntry struct {
	name string
	cert *tls.Certificate
}

// NewIssuer returns an Issuer for ca.
func NewIssuer(ca *certs.CA, opts IssuerOptions) *Issuer {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Issuer{ca: ca, now: opts.Now, max: opts.CacheSize, lru: list.New(), index: map[string]*list.Element{}}
}

// Minted returns how many leaves this issuer has minted.
func (i *Issuer) Minted() uint64 { return i.minted.Load() }

// Certificate returns a leaf for name (a host name or an IP literal), and
// whether it was minted for this call rather than taken from the cache.
func (i *Issuer) Certificate(name string) (cert *tls.Certificate, minted bool, err error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return nil, false, fmt.Errorf("minting a leaf certificate: no host name")
	}
	if cert := i.cached(name); cert != nil {
		return cert, false, nil
	}
	// Only the caller whose function ran minted; singleflight's "shared"
	// is true for that caller too when others waited on it.
	v, err, _ := i.group.Do(name, func() (any, error) {
		if cert := i.cached(name); cert != nil {
			return cert, nil // minted by a call that finished just before
		}
		cert, err := i.mint(name)
		if err != nil {
			return nil, err
		}
		i.store(name, cert)
		minted = true
		return cert, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*tls.Certificate), minted, nil
}

func (i *Issuer) cached(name string) *tls.Certificate {
	i.mu.Lock()
	defer i.mu.Unlock()
	el, ok := i.index[name]
	if !ok {
		return nil
	}
	entry := el.Value.(*cacheEntry)
	if i.now().Add(renewBefore).After(entry.cert.Leaf.NotAfter) {
		i.lru.Remove(el)
		delete(i.index, name)
		return nil
	}
	i.lru.MoveToFront(el)
	return entry.cert
}

func (i *Issuer) store(name string, cert *tls.Certificate) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if el, ok := i.index[name]; ok {
		el.Value.(*cacheEntry).cert = cert
		i.lru.MoveToFront(el)
		return
	}
	i.index[name] = i.lru.PushFront(&cacheEntry{name: name, cert: cert})
	for i.lru.Len() > i.max {
		oldest := i.lru.Back()
		i.lru.Remove(oldest)
		delete(i.index, oldest.Value.(*cacheEntry).name)
	}
}

// mint signs a new ECDSA P-256 leaf for name. P-256 keys take microseconds
// where goproxy's RSA-2048 leaves take tens of milliseconds.
func (i *Issuer) mint(name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: generating the key: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: serial: %w", name, err)
	}
	now := i.now()
	notAfter := now.Add(MaxLeafValidity)
	if caEnd := i.ca.Cert.NotAfter; notAfter.After(caEnd) {
		notAfter = caEnd
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"hopscope"}, CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		AuthorityKeyId:        i.ca.Cert.SubjectKeyId,
	}
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca.Cert, key.Public(), i.ca.Key)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: signing: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: parsing: %w", name, err)
	}
	i.minted.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, i.ca.Cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// LeafSource says where a handshake's certificate came from, for events.
type LeafSource struct {
	// Minted is true when the leaf was minted for this handshake.
	Minted bool
	// Name is the name the leaf was issued for.
	Name string
}

// ServerConfig returns the client-facing TLS configuration for one bumped
// connection to fallbackHost (the CONNECT host, used when the client sends
// no SNI). It offers only ALPN http/1.1: hopscope inspects HTTP/1.1, and
// WebSockets need it. The handshake records the leaf it used in src.
func (i *Issuer) ServerConfig(fallbackHost string, src *LeafSource) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = fallbackHost
			}
			cert, minted, err := i.Certificate(name)
			if src != nil {
				src.Minted, src.Name = minted, name
			}
			return cert, err
		},
	}
}
