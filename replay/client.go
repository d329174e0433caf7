package replay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/flow"
)

// AgainstOptions configure a replay against a live server.
type AgainstOptions struct {
	// Target replaces the scheme and host of every recorded URL
	// (http://127.0.0.1:8080); nil: the recorded hosts.
	Target *url.URL
	// Wait bounds the wait for each answer the recording has. Default 2s.
	Wait time.Duration
	// TLS configures wss:// and https:// targets; nil: system roots.
	TLS *tls.Config
}

// Report is what a replay against a live server found.
type Report struct {
	// Lines describe each exchange and message: "=" the live answer is
	// the recorded one, "-" recorded but not answered so, "+" answered
	// but not recorded.
	Lines []string
	// Differences counts the answers that differ.
	Differences int
}

// String is the report as text.
func (r *Report) String() string { return strings.Join(r.Lines, "\n") + "\n" }

// Against resends the recorded requests and client messages to a live
// server and compares its answers with the recorded ones.
func (rec *Recording) Against(ctx context.Context, opts AgainstOptions) (*Report, error) {
	if opts.Wait <= 0 {
		opts.Wait = 2 * time.Second
	}
	r := &Report{}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: opts.TLS, Proxy: nil}, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	for _, x := range rec.Exchanges {
		if err := r.exchange(ctx, client, retarget(x.URL, opts.Target), x); err != nil {
			return r, err
		}
	}
	for i := range rec.Sessions {
		if err := r.session(ctx, &rec.Sessions[i], retarget(rec.Sessions[i].URL, opts.Target), opts); err != nil {
			return r, err
		}
	}
	return r, nil
}

func retarget(u *url.URL, target *url.URL) *url.URL {
	c := *u
	if target != nil {
		c.Host = target.Host
		secure := target.Scheme == "https" || target.Scheme == "wss"
		switch {
		case c.Scheme == "ws" || c.Scheme == "wss":
			c.Scheme = map[bool]string{false: "ws", true: "wss"}[secure]
		default:
			c.Scheme = map[bool]string{false: "http", true: "https"}[secure]
		}
	}
	return &c
}

func (r *Report) add(format string, args ...any) {
	r.Lines = append(r.Lines, fmt.Sprintf(format, args...))
}

func (r *Report) exchange(ctx context.Context, client *http.Client, u *url.URL, x Exchange) error {
	req, err := http.NewRequestWithContext(ctx, x.Method, u.String(), bytes.NewReader(x.RequestBody))
	if err != nil {
		return fmt.Errorf("replaying %s %s: %w", x.Method, u, err)
	}
	r.add("%s %s", x.Method, u)
	resp, err := client.Do(req)
	if err != nil {
		r.Differences++
		r.add("  - %d (recorded)", x.Status)
		r.add("  + no answer: %v", err)
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if resp.StatusCode != x.Status {
		r.Differences++
		r.add("  - status %d", x.Status)
		r.add("  + status %d", resp.StatusCode)
	} else {
		r.add("  = status %d", x.Status)
	}
	if bytes.Equal(body, x.Body) || samePayload(body, x.Body) {
		r.add("  = body (%d bytes)", len(body))
	} else {
		r.Differences++
		r.add("  - body %s", show(x.Body))
		r.add("  + body %s", show(body))
	}
	return nil
}

func (r *Report) session(ctx context.Context, sess *Session, u *url.URL, opts AgainstOptions) error {
	r.add("WebSocket %s", u)
	d := ws.Dialer{Timeout: 10 * time.Second, TLSConfig: opts.TLS}
	if sess.Subprotocol != "" {
		d.Protocols = []string{sess.Subprotocol}
	}
	conn, br, _, err := d.Dial(ctx, u.String())
	if err != nil {
		r.Differences++
		r.add("  + handshake failed: %v", err)
		return nil
	}
	defer conn.Close()
	var rd io.Reader = conn
	if br != nil {
		rd = br // it holds what came with the handshake, then reads conn
	}
	rw := struct {
		io.Reader
		io.Writer
	}{rd, conn}
	for _, m := range sess.Messages {
		if m.From == flow.FromClient {
			if err := wsutil.WriteClientMessage(conn, ws.OpCode(m.Op), m.Payload); err != nil {
				r.Differences++
				r.add("  + sending failed: %v", err)
				return nil
			}
			r.add("  > %s", show(m.Payload))
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(opts.Wait))
		got, _, err := wsutil.ReadServerData(rw)
		switch {
		case err != nil:
			r.Differences++
			r.add("  - %s", show(m.Payload))
			r.add("  + nothing: %v", describeReadError(err))
			return nil
		case samePayload(got, m.Payload):
			r.add("  = %s", show(got))
		default:
			r.Differences++
			r.add("  - %s", show(m.Payload))
			r.add("  + %s", show(got))
		}
	}
	_ = wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	return nil
}

func describeReadError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return "no answer in time"
	}
	var closed wsutil.ClosedError
	if errors.As(err, &closed) {
		return fmt.Sprintf("the server closed with %d %s", closed.Code, closed.Reason)
	}
	return err.Error()
}

// show prints a payload for a report: text as is (cut at 200 bytes),
// anything else as its length.
func show(p []byte) string {
	if !utf8.Valid(p) {
		return fmt.Sprintf("<%d bytes of binary>", len(p))
	}
	if len(p) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", p[:200], len(p))
	}
	return fmt.Sprintf("%q", p)
}
