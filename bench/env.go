package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
)

// env is the loopback world: origins, the targets, and what to stop.
type env struct {
	opts        Options
	httpOrigin  *httptest.Server
	tlsOrigin   *httptest.Server
	wsOrigin    net.Listener // ws:// echo
	wssOrigin   net.Listener // wss:// echo
	bulk        net.Listener // 10 MiB after one byte
	tcpEcho     net.Listener // raw bytes echoed, for idle tunnels
	originCA    *certs.CA
	originRoots *x509.CertPool
	dir         string
	targets     []*target
	stops       []func()
}

const bulkSize = 10 << 20

// tlsHost is the name the TLS origins' certificate carries; clients and
// proxies reach them as localhost:PORT.
const tlsHost = "localhost"

func newEnv(opts Options) (*env, error) {
	e := &env{opts: opts}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	var err error
	if e.dir, err = os.MkdirTemp("", "hopscope-bench"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() { _ = os.RemoveAll(e.dir) })
	if e.originCA, err = certs.Create(filepath.Join(e.dir, "origin"), false); err != nil {
		return nil, err
	}
	e.originRoots = x509.NewCertPool()
	e.originRoots.AddCert(e.originCA.Cert)
	serverTLS := mitm.NewIssuer(e.originCA, mitm.IssuerOptions{}).ServerConfig(tlsHost, nil)
	serverTLS.NextProtos = []string{"http/1.1"}

	bulk := make([]byte, bulkSize)
	e.httpOrigin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/10MiB" {
			w.Header().Set("Content-Length", strconv.Itoa(bulkSize))
			_, _ = w.Write(bulk)
			return
		}
		_, _ = io.WriteString(w, "hello, small world")
	}))
	e.stops = append(e.stops, e.httpOrigin.Close)
	e.tlsOrigin = httptest.NewUnstartedServer(e.httpOrigin.Config.Handler)
	e.tlsOrigin.TLS = serverTLS
	e.tlsOrigin.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.tlsOrigin.StartTLS()
	e.stops = append(e.stops, e.tlsOrigin.Close)

	listen := func(conf *tls.Config, serve func(net.Conn)) (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		e.stops = append(e.stops, func() { ln.Close() })
		if conf != nil {
			ln = tls.NewListener(ln, conf)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
		return ln, nil
	}
	if e.wsOrigin, err = listen(nil, serveWSEcho); err != nil {
		return nil, err
	}
	if e.wssOrigin, err = listen(serverTLS, serveWSEcho); err != nil {
		return nil, err
	}
	if e.bulk, err = listen(nil, serveBulk); err != nil {
		return nil, err
	}
	if e.tcpEcho, err = listen(nil, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	}); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

func (e *env) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
	e.stops = nil
}

// startTargets starts the hopscope processes and adds the compared
// proxies, each with the roots its clients trust.
func (e *env) startTargets() error {
	for _, name := range e.opts.Builtin {
		t, err := e.startHopscope(name)
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		e.targets = append(e.targets, t)
	}
	for _, c := range e.opts.Compare {
		t := &target{Target: c, roots: e.originRoots.Clone()}
		if len(c.CA) > 0 && !t.roots.AppendCertsFromPEM(c.CA) {
			return fmt.Errorf("--compare-ca for %s: no PEM certificate in it", c.Name)
		}
		e.targets = append(e.targets, t)
	}
	return nil
}

// startHopscope runs hopscope as its own process: as a user runs it, with
// every event written (to /dev/null: formatting and writing events is part
// of the cost, keeping them is not).
func (e *env) startHopscope(name string) (*target, error) {
	args := []string{"serve", "--connect-ports", "*", "--log-format", "json", "--log-file", os.DevNull}
	caDir := filepath.Join(e.dir, name)
	switch name {
	case "hopscope":
	case "hopscope-mitm":
		args = append(args, "--mitm", "--ca-dir", caDir,
			"--upstream-ca", filepath.Join(e.dir, "origin", certs.CertFile))
	default:
		return nil, fmt.Errorf("unknown built-in target %q: use %v", name, Builtins)
	}
	t := &target{Target: Target{Name: name}}
	var cmd *exec.Cmd
	stop := func() {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			cmd = nil
		}
	}
	t.restart = func() error {
		stop()
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cmd = e.opts.Launch(append(slicesClone(args), "--listen", addr))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		// Usage errors and the like go to stderr; keep the first lines.
		errLines := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			var first string
			for sc.Scan() {
				if first == "" {
					first = sc.Text()
				}
			}
			errLines <- first
		}()
		if err := waitListening(addr, 10*time.Second); err != nil {
			stop()
			return fmt.Errorf("%w: %s", err, <-errLines)
		}
		t.Addr, t.PID = addr, cmd.Process.Pid
		return nil
	}
	e.stops = append(e.stops, stop)
	if err := t.restart(); err != nil {
		return nil, err
	}
	t.roots = e.originRoots.Clone()
	if name == "hopscope-mitm" {
		// --mitm created the CA on its first start.
		pem, err := os.ReadFile(filepath.Join(caDir, certs.CertFile))
		if err != nil {
			return nil, err
		}
		t.CA = pem
		t.roots.AppendCertsFromPEM(pem)
	}
	return t, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// freeAddr picks a loopback port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s", addr, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveBulk sends 10 MiB once the client has sent a byte (the client
// speaks first, so hopscope sniffs the tunnel and splices it).
func serveBulk(c net.Conn) {
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return
	}
	chunk := make([]byte, 256<<10)
	for sent := 0; sent < bulkSize; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}
