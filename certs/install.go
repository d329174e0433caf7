package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/smallstep/truststore"
)

// StoreResult says what happened to one trust store.
type StoreResult struct {
	// Store names the trust store ("system", "Firefox/Chromium (NSS)", "Java").
	Store string
	// Done reports whether the store now holds (or no longer holds) the CA.
	Done bool
	// Detail says what was done, or why not and what would fix it.
	Detail string
}

// The names of the trust stores, as StoreResult.Store gives them.
const (
	systemStore = "system"
	nssStore    = "Firefox/Chromium (NSS)"
	javaStore   = "Java"
)

// trustStore is one store the CA can be put into.
type trustStore struct {
	name      string
	install   func(certPath string, c *x509.Certificate) error
	uninstall func(certPath string, c *x509.Certificate) error
	// available explains why the store cannot be used, or is nil.
	available func() error
}

// stores lists the system store and, through truststore, the NSS databases
// (Chromium, Firefox) and Java's cacerts. truststore alone would skip an
// unavailable store in silence; hopscope reports each one.
func stores() []trustStore {
	out := []trustStore{{
		name:      systemStore,
		install:   func(_ string, c *x509.Certificate) error { return truststore.Install(c) },
		uninstall: func(_ string, c *x509.Certificate) error { return truststore.Uninstall(c) },
		available: func() error { return nil },
	}}
	if nss, err := truststore.NewNSSTrust(); err == nil {
		out = append(out, fromTrust(nssStore, nss))
	} else {
		out = append(out, unavailable(nssStore, err))
	}
	if java, err := truststore.NewJavaTrust(); err == nil {
		out = append(out, fromTrust(javaStore, java))
	} else {
		out = append(out, unavailable(javaStore, err))
	}
	return out
}

func fromTrust(name string, t truststore.Trust) trustStore {
	return trustStore{
		name: name,
		install: func(certPath string, c *x509.Certificate) error {
			if t.Exists(c) {
				return nil
			}
			return t.Install(certPath, c)
		},
		uninstall: func(certPath string, c *x509.Certificate) error { return t.Uninstall(certPath, c) },
		available: t.PreCheck,
	}
}

func unavailable(name string, err error) trustStore {
	return trustStore{name: name, available: func() error { return err }}
}

// Install puts the CA certificate into every trust store it can reach and
// reports on each; the system store usually needs root.
func (ca *CA) Install() []StoreResult {
	return ca.apply("installed", func(s trustStore) func(string, *x509.Certificate) error { return s.install })
}

// Uninstall removes the CA certificate from every trust store it can reach.
func (ca *CA) Uninstall() []StoreResult {
	return ca.apply("removed", func(s trustStore) func(string, *x509.Certificate) error { return s.uninstall })
}

func (ca *CA) apply(verb string, op func(trustStore) func(string, *x509.Certificate) error) []StoreResult {
	certPath := filepath.Join(ca.Dir, CertFile)
	var results []StoreResult
	for _, s := range stores() {
		if err := s.available(); err != nil {
			results = append(results, StoreResult{Store: s.name, Detail: "skipped: " + whyUnavailable(s.name, err)})
			continue
		}
		if err := op(s)(certPath, ca.Cert); err != nil {
			detail := "failed: " + firstLine(err.Error())
			if s.name == systemStore {
				detail += " (the system store needs root: try sudo)"
			}
			results = append(results, StoreResult{Store: s.name, Detail: detail})
			continue
		}
		results = append(results, StoreResult{Store: s.name, Done: true, Detail: verb})
	}
	return results
}

// whyUnavailable says why a store cannot be used in words that tell the
// person what to do, rather than truststore's ("trust does not exists",
// exec's "certutil": executable file not found).
func whyUnavailable(store string, err error) string {
	switch {
	case store == nssStore && errors.Is(err, exec.ErrNotFound):
		return "certutil is not installed (Debian, Ubuntu: apt-get install libnss3-tools; Fedora: dnf install nss-tools; macOS: brew install nss)"
	case store == javaStore && errors.Is(err, truststore.ErrTrustNotFound):
		return "no Java found: set JAVA_HOME to the Java whose cacerts should trust the CA"
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}
