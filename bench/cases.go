package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func (e *env) transport(proxyAddr string, roots *tlsRoots, keepAlive bool, conns int) *http.Transport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if roots != nil {
		tr.TLSClientConfig = roots.config()
	}
	if proxyAddr != "" {
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr})
	}
	return tr
}

// tlsRoots is how a client checks the server: the origin's root directly,
// the proxy's CA through a bump (or nothing, for an external proxy whose
// CA was not given).
type tlsRoots struct {
	conf *tls.Config
}

func (r *tlsRoots) config() *tls.Config { return r.conf.Clone() }

func get(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return err
}

// smallGET: 32 concurrent keep-alive clients fetch a small answer.
func smallGET(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
	const workers = 32
	addr := ""
	if via {
		addr = e.plainAddr
	}
	tr := e.transport(addr, nil, true, workers)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	return e.loop(ctx, workers, func(int) error { return get(c, e.httpOrigin.URL) })
}

// connectDownload: one client downloads 10 MiB over a new connection,
// through a spliced CONNECT tunnel when proxied.
func connectDownload(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
	var bytes int64
	start := time.Now()
	_, lats, err := e.loop(ctx, 1, func(int) error {
		conn, r, err := e.dialBulk(via)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("x")); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, r)
		bytes += n
		if n != bulkSize {
			return fmt.Errorf("downloaded %d of %d bytes: %v", n, bulkSize, err)
		}
		return nil
	})
	return float64(bytes) / 1e6 / time.Since(start).Seconds(), lats, err
}

func (e *env) dialBulk(via bool) (net.Conn, io.Reader, error) {
	if !via {
		c, err := net.Dial("tcp", e.bulk.Addr().String())
		return c, c, err
	}
	return connectVia(e.plainAddr, e.bulk.Addr().String())
}

// connectVia opens a CONNECT tunnel through proxyAddr.
func connectVia(proxyAddr, target string) (net.Conn, io.Reader, error) {
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT %s through %s: %v %v", target, proxyAddr, resp, err)
	}
	return c, br, nil
}

// httpsRequests: 32 concurrent clients fetch over HTTPS, bumped when
// proxied; keepAlive false makes each request a new TLS connection.
func httpsRequests(ctx context.Context, e *env, via, keepAlive bool) (float64, []time.Duration, error) {
	const workers = 32
	roots := &tlsRoots{conf: &tls.Config{RootCAs: e.originRoots, ServerName: "localhost"}}
	addr := ""
	if via {
		addr = e.bumpAddr
		roots = &tlsRoots{conf: &tls.Config{RootCAs: e.proxyRoots, InsecureSkipVerify: e.proxyRoots == nil}}
	}
	tr := e.transport(addr, roots, keepAlive, workers)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	u := "https://" + strings.Replace(e.tlsOrigin.Listener.Addr().String(), "127.0.0.1", "localhost", 1) + "/"
	return e.loop(ctx, workers, func(int) error { return get(c, u) })
}

// dialWS opens a WebSocket to the echo origin, through a CONNECT tunnel
// (as browsers send ws://) when proxied.
func (e *env) dialWS(via bool) (net.Conn, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	if via {
		d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, r, err := connectVia(e.plainAddr, addr)
			if err != nil {
				return nil, err
			}
			if br := r.(*bufio.Reader); br.Buffered() > 0 {
				return nil, errors.New("unexpected bytes after CONNECT")
			}
			return c, nil
		}
	}
	conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(e.wsOrigin.URL, "http")+"/echo")
	return conn, err
}

// wsEcho64: 100 connections each echo 64-byte messages, one in flight.
func wsEcho64(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
	const n = 100
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := e.dialWS(via)
		if err != nil {
			return 0, nil, err
		}
		defer c.Close()
		conns[i] = c
	}
	payload := make([]byte, 64)
	return e.loop(ctx, n, func(w int) error {
		if err := wsutil.WriteClientBinary(conns[w], payload); err != nil {
			return err
		}
		_, err := wsutil.ReadServerBinary(conns[w])
		return err
	})
}

// wsBig: 1 MiB messages echoed on one connection; MB/s counts each
// message once.
func wsBig(ctx context.Context, e *env, via bool) (float64, []time.Duration, error) {
	c, err := e.dialWS(via)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	payload := make([]byte, 1<<20)
	rate, lats, err := e.loop(ctx, 1, func(int) error {
		if err := wsutil.WriteClientBinary(c, payload); err != nil {
			return err
		}
		_, err := wsutil.ReadServerBinary(c)
		return err
	})
	return rate * float64(len(payload)) / 1e6, lats, err
}

// idleConns measures the heap and stacks 1,000 idle connections cost, in
// KiB per connection; the proxy's share is the proxied figure minus the
// direct one (clients and origins live in this process too).
func idleConns(open func() (net.Conn, error)) (float64, []time.Duration, error) {
	const n = 1000
	// Let the previous case's connections and goroutines finish dying, so
	// the baseline is not lowered by their memory coming back.
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := open()
		if err != nil {
			return 0, nil, err
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	// Two collections: sync.Pool keeps its buffers through the first (the
	// victim cache), and pooled relay buffers are not a cost of idling.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	used := int64(m1.HeapInuse+m1.StackInuse) - int64(m0.HeapInuse+m0.StackInuse)
	return float64(used) / n / 1024, nil, nil
}

func idleWS(_ context.Context, e *env, via bool) (float64, []time.Duration, error) {
	return idleConns(func() (net.Conn, error) {
		c, err := e.dialWS(via)
		if err != nil {
			return nil, err
		}
		if err := wsutil.WriteClientBinary(c, []byte("x")); err != nil {
			return nil, err
		}
		_, err = wsutil.ReadServerBinary(c)
		return c, err
	})
}

func idleTunnel(_ context.Context, e *env, via bool) (float64, []time.Duration, error) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return idleConns(func() (net.Conn, error) {
		var c net.Conn
		var r io.Reader
		var err error
		if via {
			c, r, err = connectVia(e.plainAddr, echo.Addr().String())
		} else {
			c, err = net.Dial("tcp", echo.Addr().String())
			r = c
		}
		if err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte("x")); err != nil {
			return nil, err
		}
		_, err = io.ReadFull(r, make([]byte, 1))
		return c, err
	})
}

func tempDir() (string, error) { return os.MkdirTemp("", "hopscope-bench") }

func removeAll(dir string) { _ = os.RemoveAll(dir) }

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
