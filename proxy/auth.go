package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Credentials are the user names and passwords that may use the proxy. The
// zero value is not usable; use NewCredentials. A Credentials with no users
// turns authentication off.
type Credentials struct {
	plain  map[string][32]byte // user -> SHA-256 of the password
	hashed map[string][]byte   // user -> bcrypt or {SHA} hash from htpasswd

	// bcrypt costs tens of milliseconds, far too much per proxied request,
	// so a password that verified once is remembered by its SHA-256, as
	// squid remembers credentials for credentialsttl.
	mu       sync.Mutex
	verified map[string][32]byte
}

// NewCredentials returns an empty set of credentials.
func NewCredentials() *Credentials {
	return &Credentials{
		plain:    map[string][32]byte{},
		hashed:   map[string][]byte{},
		verified: map[string][32]byte{},
	}
}

// Empty reports whether no user is configured, which means authentication
// is off.
func (c *Credentials) Empty() bool {
	return c == nil || len(c.plain)+len(c.hashed) == 0
}

// AddPair adds a "user:password" pair as given to --auth.
func (c *Credentials) AddPair(pair string) error {
	user, pass, ok := strings.Cut(pair, ":")
	if !ok || user == "" {
		return fmt.Errorf("credentials %q are not USER:PASSWORD", redactPair(pair))
	}
	c.plain[user] = sha256.Sum256([]byte(pass))
	return nil
}

func redactPair(pair string) string {
	user, _, _ := strings.Cut(pair, ":")
	return user + ":***"
}

// AddHtpasswd adds the users of an htpasswd file's contents. Entries must
// use bcrypt ("htpasswd -B", $2y$/$2a$/$2b$) or {SHA}; MD5 ($apr1$) and crypt
// entries are refused with the line number, since they cannot be checked
// safely. source names the file in errors.
func (c *Credentials) AddHtpasswd(data []byte, source string) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" || hash == "" {
			return fmt.Errorf("%s:%d: not a USER:HASH entry", source, line)
		}
		switch {
		case strings.HasPrefix(hash, "$2y$"), strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"):
			if _, err := bcrypt.Cost([]byte(hash)); err != nil {
				return fmt.Errorf("%s:%d: user %s: malformed bcrypt hash: %w", source, line, user, err)
			}
		case strings.HasPrefix(hash, "{SHA}"):
			if raw, err := base64.StdEncoding.DecodeString(hash[5:]); err != nil || len(raw) != sha1.Size {
				return fmt.Errorf("%s:%d: user %s: malformed {SHA} hash", source, line, user)
			}
		default:
			return fmt.Errorf("%s:%d: user %s: unsupported hash; create entries with `htpasswd -B` (bcrypt)", source, line, user)
		}
		c.hashed[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", source, err)
	}
	return nil
}

// Check reports whether user and pass are valid. Comparisons take the same
// time whether the user exists or not.
func (c *Credentials) Check(user, pass string) bool {
	sum := sha256.Sum256([]byte(pass))
	if want, ok := c.plain[user]; ok {
		return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	}
	hash, ok := c.hashed[user]
	if !ok {
		// Spend the same work as a real comparison so that timing does not
		// tell which users exist.
		var zero [32]byte
		subtle.ConstantTimeCompare(sum[:], zero[:])
		return false
	}
	c.mu.Lock()
	known, seen := c.verified[user]
	c.mu.Unlock()
	if seen && subtle.ConstantTimeCompare(sum[:], known[:]) == 1 {
		return true
	}
	if !checkHash(hash, pass) {
		return false
	}
	c.mu.Lock()
	c.verified[user] = sum
	c.mu.Unlock()
	return true
}

func checkHash(hash []byte, pass string) bool {
	if rest, ok := bytes.CutPrefix(hash, []byte("{SHA}")); ok {
		sum := sha1.Sum([]byte(pass))
		want := make([]byte, sha1.Size)
		n, err := base64.StdEncoding.Decode(want, rest)
		return err == nil && n == sha1.Size && subtle.ConstantTimeCompare(sum[:], want) == 1
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
}

// errNoCredentials and friends say why a Proxy-Authorization was refused.
var (
	errNoCredentials    = errors.New("this proxy requires credentials (Proxy-Authorization: Basic)")
	errNotBasic         = errors.New("only the Basic scheme is supported in Proxy-Authorization")
	errMalformedBasic   = errors.New("malformed Basic credentials in Proxy-Authorization (not base64 of USER:PASSWORD)")
	errWrongCredentials = errors.New("wrong user name or password")
)

// authenticate checks a request's Proxy-Authorization against c.
func (c *Credentials) authenticate(h http.Header) error {
	value := h.Get("Proxy-Authorization")
	if value == "" {
		return errNoCredentials
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(value), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return errNotBasic
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil {
		return errMalformedBasic
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return errMalformedBasic
	}
	if !c.Check(user, pass) {
		return errWrongCredentials
	}
	return nil
}
