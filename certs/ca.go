// Package certs owns hopscope's local certificate authority on disk: it
// creates the CA on first use, loads it with strict checks (key file
// permissions, a matching pair, a usable CA certificate), exports it, and
// installs it into the trust stores browsers and tools read. It never logs;
// it returns values and errors that name the file at fault.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// File names inside the CA directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// Validity of a new CA certificate.
const caValidity = 10 * 365 * 24 * time.Hour

// EnvDir names the environment variable that sets the CA directory when no
// --ca-dir is given.
const EnvDir = "HOPSCOPE_CA_DIR"

// CA is a loaded certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs leaf certificates.
	Key crypto.Signer
	// CertPEM is the certificate as stored in ca.pem.
	CertPEM []byte
	// Dir is the directory it was loaded from.
	Dir string
}

// ErrNotFound means the directory holds no CA yet.
var ErrNotFound = errors.New("no hopscope CA in this directory")

// Dir resolves the CA directory: flagValue when set, else $HOPSCOPE_CA_DIR,
// else "hopscope" in the user's configuration directory
// (~/.config/hopscope on Linux).
func Dir(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if env := os.Getenv(EnvDir); env != "" {
		return env, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the CA directory: %w (set --ca-dir or %s)", err, EnvDir)
	}
	return filepath.Join(base, "hopscope"), nil
}

// LoadOrCreate loads the CA in dir, creating one first if the directory has
// none. created reports whether it was made now.
func LoadOrCreate(dir string) (ca *CA, created bool, err error) {
	ca, err = Load(dir)
	if errors.Is(err, ErrNotFound) {
		ca, err = Create(dir, false)
		return ca, err == nil, err
	}
	return ca, false, err
}

// Create makes a new CA in dir. It refuses to replace an existing
// certificate or key unless force is set.
func Create(dir string, force bool) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return nil, fmt.Errorf("%s already exists; pass --force to replace the CA (clients that trust the old one will stop trusting hopscope)", p)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the CA directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	cert, certDER, err := newCACert(key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the CA key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	// The key first: a certificate without its key is useless, a key
	// without its certificate is simply replaced on the next run.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, Dir: dir}, nil
}

func newCACert(key *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	owner := ownerName()
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the CA public key: %w", err)
	}
	skid := sha1.Sum(pubDER)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"hopscope local CA"},
			OrganizationalUnit: []string{owner},
			CommonName:         "hopscope " + owner,
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the new CA certificate: %w", err)
	}
	return cert, der, nil
}

// ownerName is "user@host", so that a person looking at a trust store can
// tell whose hopscope a CA belongs to (as mkcert does).
func ownerName() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return name + "@" + host
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return serial, nil
}

// Load reads the CA in dir. It refuses a key file that group or others can
// read, a file that does not parse, a key that does not match the
// certificate, and a certificate that cannot sign leaves.
func Load(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyInfo, keyErr := os.Stat(keyPath)
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotFound)
	}
	if certErr != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w (the key %s exists; restore the certificate or recreate both with --force)", certErr, keyPath)
	}
	if keyErr != nil {
		return nil, fmt.Errorf("reading the CA key: %w (the certificate %s exists; restore the key or recreate both with --force)", keyErr, certPath)
	}
	if perm := keyInfo.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %04o): anyone who can read it can impersonate every site to browsers that trust this CA; run: chmod 600 %s", keyPath, perm, keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	cert, err := parseCertPEM(certPEM, certPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM, keyPath)
	if err != nil {
		return nil, err
	}
	if err := checkPair(cert, key, certPath, keyPath); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, Dir: dir}, nil
}

func parseCertPEM(data []byte, path string) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block; the file is corrupt (recreate the CA with --force)", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: the certificate does not parse: %w", path, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: not a CA certificate (no CA basic constraints or certSign usage)", path)
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("%s: the CA certificate is valid only from %s to %s; recreate it with --force", path,
			cert.NotBefore.Format(time.DateOnly), cert.NotAfter.Format(time.DateOnly))
	}
	return cert, nil
}

func parseKeyPEM(data []byte, path string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block; the file is corrupt (recreate the CA with --force)", path)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: unexpected PEM block %q, want a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: the key does not parse: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the key cannot sign", path)
	}
	return signer, nil
}

func checkPair(cert *x509.Certificate, key crypto.Signer, certPath, keyPath string) error {
	want, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	got, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if !bytes.Equal(want, got) {
		return fmt.Errorf("%s does not belong to %s (the public keys differ); restore the right pair or recreate both with --force", keyPath, certPath)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a crash never leaves a half-written CA behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// DER returns the CA certificate in DER form.
func (ca *CA) DER() []byte { return ca.Cert.Raw }

// Fingerprint is the SHA-256 fingerprint of the certificate, as browsers
// show it.
func (ca *CA) Fingerprint() string {
	return fingerprint(ca.Cert.Raw)
}
