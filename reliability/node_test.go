package reliability

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// nodeClient finds node and the client's packages (.ci/run installs them
// with npm); without them the test fails under CI and is skipped elsewhere.
func nodeClient(t *testing.T) (node, script string) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("testdata", "node"))
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "https-proxy-agent"))
	}
	if err != nil {
		msg := "needs node and `npm install --prefix reliability/testdata/node`: " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node, filepath.Join(dir, "wss-through-proxy.js")
}

// A real Node.js client (ws with https-proxy-agent) reaching
// wss://127.0.0.1:PORT through the bump: it sends no SNI for an IP and
// checks the certificate against "localhost", which the bump's leaf holds
// because the destination's certificate does.
func TestNodeWebSocketThroughTheBumpToAnIP(t *testing.T) {
	noLeaks(t)
	node, script := nodeClient(t)
	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	// A development certificate as such servers have: localhost and its IP.
	cert, _, err := mitm.NewIssuer(originCA, mitm.IssuerOptions{}).CertificateLike("localhost",
		&x509.Certificate{Raw: []byte("dev cert"), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		msg, op, err := wsutil.ReadClientData(conn)
		if err == nil {
			_ = wsutil.WriteServerMessage(conn, op, append([]byte("echo: "), msg...))
		}
		_, _, _ = wsutil.ReadClientData(conn) // until the client closes
	}))
	origin.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	origin.Config.ErrorLog = log.New(io.Discard, "", 0)
	origin.StartTLS()
	defer origin.Close()

	px := start(t, nil, proxytest.WithMITM(), proxytest.WithUpstreamCA(originCA.CertPEM))
	caFile := filepath.Join(t.TempDir(), "hopscope-ca.pem")
	if err := os.WriteFile(caFile, px.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := "wss://" + origin.Listener.Addr().String() + "/"
	cmd := exec.CommandContext(ctx, node, script, target, px.URL().String())
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "echo: hello from node" {
		t.Fatalf("node through the bump to %s: %v\n%s", target, err, out)
	}
}
