package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
)

func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"ca", "path", "--ca-dir", dir}, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != dir {
		t.Fatalf("ca path: %q %v", out.String(), err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"ca", "export", "--ca-dir", dir}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "ca init") {
		t.Fatalf("export before init: %v", err)
	}
	if err := run(context.Background(), []string{"ca", "init", "--ca-dir", dir}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "fingerprint") {
		t.Fatalf("ca init: %q %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"ca", "init", "--ca-dir", dir}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second init: %v", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"ca", "export", "--ca-dir", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(out.Bytes())
	onDisk, _ := os.ReadFile(filepath.Join(dir, certs.CertFile))
	diskBlock, _ := pem.Decode(onDisk)
	if block == nil || diskBlock == nil || !bytes.Equal(block.Bytes, diskBlock.Bytes) {
		t.Fatal("export does not write the CA certificate as PEM")
	}
	out.Reset()
	if err := run(context.Background(), []string{"ca", "export", "--der", "--ca-dir", dir}, &out, io.Discard); err != nil || !bytes.Equal(out.Bytes(), diskBlock.Bytes) {
		t.Fatalf("export --der: %v", err)
	}
	t.Setenv(certs.EnvDir, dir)
	out.Reset()
	if err := run(context.Background(), []string{"ca", "path"}, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != dir {
		t.Errorf("ca path from $%s: %q", certs.EnvDir, out.String())
	}
	if err := run(context.Background(), []string{"ca", "--ca-dir", dir, "path"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "first, then its flags") {
		t.Errorf("ca with a flag before the subcommand: %v", err)
	}
	for _, args := range [][]string{{"ca"}, {"ca", "frobnicate"}, {"ca", "path", "extra"}, {"ca", "init", "--nope"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if err := os.Chmod(filepath.Join(dir, certs.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"ca", "export"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key: %v", err)
	}
}

// The whole command with --mitm: it creates the CA on first use, bumps a
// TLS tunnel for a client that trusts only ca.pem, verifies the origin with
// --upstream-ca, and reuses the CA on restart.
func TestServeWithMITM(t *testing.T) {
	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "bumped ok")
	}))
	origin.TLS = mitm.NewIssuer(originCA, mitm.IssuerOptions{}).ServerConfig("localhost", nil)
	origin.StartTLS()
	defer origin.Close()
	originURL := strings.Replace(origin.URL, "127.0.0.1", "localhost", 1)
	upstreamCA := writeFile(t, "origin-ca.pem", string(originCA.CertPEM))
	caDir := filepath.Join(t.TempDir(), "ca")

	fingerprint := ""
	for round := range 2 {
		logFile := filepath.Join(t.TempDir(), "events.log")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--log-file", logFile, "--mitm", "--ca-dir", caDir,
				"--upstream-ca", upstreamCA, "--connect-ports", "*"}, io.Discard, io.Discard)
		}()
		addr := waitListenAddr(t, logFile)
		ca, err := certs.Load(caDir)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if round == 0 {
			fingerprint = ca.Fingerprint()
		} else if ca.Fingerprint() != fingerprint {
			t.Error("a restart made a new CA")
		}
		pemBytes, _ := os.ReadFile(filepath.Join(caDir, certs.CertFile))
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pemBytes)
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), TLSClientConfig: &tls.Config{RootCAs: roots}}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(originURL)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != "bumped ok" {
			t.Errorf("round %d: body %q", round, body)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		log, _ := os.ReadFile(logFile)
		created := strings.Contains(string(log), `"event":"ca_created"`)
		if created != (round == 0) {
			t.Errorf("round %d: ca_created event present = %v", round, created)
		}
		if !strings.Contains(string(log), `"ca_fingerprint":"`+fingerprint+`"`) {
			t.Errorf("round %d: listen event lacks the CA fingerprint", round)
		}
	}
}
