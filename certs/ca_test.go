package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateThenLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, created, err := LoadOrCreate(dir)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate on an empty dir: created %v, %v", created, err)
	}
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA %v maxPathLen %d zero %v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if years := c.NotAfter.Sub(c.NotBefore).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
		t.Errorf("validity %.1f years, want 10", years)
	}
	if !strings.Contains(c.Subject.CommonName, "hopscope") || !strings.Contains(c.Subject.CommonName, "@") {
		t.Errorf("subject %q should name hopscope, the user and the machine", c.Subject)
	}
	for name, want := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %04o (%v)", name, info.Mode().Perm(), want, err)
		}
	}

	again, created, err := LoadOrCreate(dir)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created %v, %v", created, err)
	}
	if again.Fingerprint() != ca.Fingerprint() {
		t.Error("a restart must reuse the CA, not make a new one")
	}
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, err := Create(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Create: %v, want a refusal naming --force", err)
	}
	second, err := Create(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if second.Fingerprint() == first.Fingerprint() {
		t.Error("--force did not make a new CA")
	}
}

func TestLoadRefusals(t *testing.T) {
	other := t.TempDir()
	if _, err := Create(other, false); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, KeyFile))
	cases := []struct {
		name   string
		damage func(dir string)
		want   []string
	}{
		{"key readable by others", func(dir string) { _ = os.Chmod(filepath.Join(dir, KeyFile), 0o644) }, []string{KeyFile, "chmod 600", "0644"}},
		{"key readable by group", func(dir string) { _ = os.Chmod(filepath.Join(dir, KeyFile), 0o640) }, []string{"chmod 600"}},
		{"corrupt certificate", func(dir string) { _ = os.WriteFile(filepath.Join(dir, CertFile), []byte("not pem"), 0o644) }, []string{CertFile, "corrupt"}},
		{"truncated certificate", func(dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, CertFile))
			_ = os.WriteFile(filepath.Join(dir, CertFile), data[:len(data)/2], 0o644)
		}, []string{CertFile}},
		{"corrupt key", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, KeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, []string{KeyFile, "does not parse"}},
		{"mismatched pair", func(dir string) { _ = os.WriteFile(filepath.Join(dir, KeyFile), otherKey, 0o600) }, []string{KeyFile, "does not belong to", CertFile}},
		{"key missing", func(dir string) { _ = os.Remove(filepath.Join(dir, KeyFile)) }, []string{"CA key", "--force"}},
		{"certificate missing", func(dir string) { _ = os.Remove(filepath.Join(dir, CertFile)) }, []string{"CA certificate", "--force"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Create(dir, false); err != nil {
				t.Fatal(err)
			}
			tc.damage(dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("loaded a broken CA")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// Nothing is overwritten without --force.
			if _, _, err := LoadOrCreate(dir); err == nil {
				t.Error("LoadOrCreate replaced a broken CA without --force")
			}
		})
	}
}

func TestLoadEmptyDirIsNotFound(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestDirPrecedence(t *testing.T) {
	t.Setenv(EnvDir, "/from/env")
	if d, _ := Dir("/from/flag"); d != "/from/flag" {
		t.Errorf("flag: %q", d)
	}
	if d, _ := Dir(""); d != "/from/env" {
		t.Errorf("env: %q", d)
	}
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if d, _ := Dir(""); d != "/xdg/hopscope" {
		t.Errorf("default: %q", d)
	}
}

func TestFingerprintFormat(t *testing.T) {
	ca, err := Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	fp := ca.Fingerprint()
	if len(fp) != 32*3-1 || strings.Count(fp, ":") != 31 {
		t.Errorf("fingerprint %q", fp)
	}
	if time.Until(ca.Cert.NotAfter) < 9*365*24*time.Hour {
		t.Error("expiry too soon")
	}
}
