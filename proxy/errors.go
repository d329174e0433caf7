package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/hopscope/hopscope/policy"
)

// proxyError is an answer the proxy gives instead of the destination's: a
// status, an RFC 9209 Proxy-Status error type and a sentence for a person.
// Every failure a client can see goes through it, so that no raw Go error
// text or bare 500 reaches the client.
type proxyError struct {
	Status int
	// ProxyStatus is the RFC 9209 error type ("connection_refused", ...).
	ProxyStatus string
	// Message says what happened and, where there is one, what to do.
	Message string
	// Rule names the policy rule or check behind a refusal, for events.
	Rule string
	// Reason is the short policy reason of a refusal, for events; empty
	// when Message says it all.
	Reason string
	// Hint is the sentence of Message that says how to allow a refusal,
	// for events; empty when nothing would.
	Hint string
	// Err is the underlying cause, kept for events and errors.Is.
	Err error
}

func (e *proxyError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *proxyError) Unwrap() error { return e.Err }

// deniedError is returned by the dialer when the resolved address of a
// destination is refused by policy.
type deniedError struct {
	Decision policy.Decision
	Target   string
}

func (e *deniedError) Error() string {
	return "hopscope policy denied " + e.Target + ": " + e.Decision.Reason
}

// parentProxyError is returned when a parent proxy refuses a CONNECT.
type parentProxyError struct {
	Parent string
	Status string
}

func (e *parentProxyError) Error() string {
	return "parent proxy " + e.Parent + " answered " + e.Status
}

func denial(kind policy.Kind, target string, d policy.Decision) *proxyError {
	verb := "requests"
	if kind == policy.Connect {
		verb = "CONNECT"
	}
	hint := "To allow it, " + d.Fix + "."
	return &proxyError{
		Status:      http.StatusForbidden,
		ProxyStatus: d.ProxyStatus,
		Message:     fmt.Sprintf("hopscope denied %s to %s: %s (rule %s). %s", verb, target, d.Reason, d.Rule, hint),
		Rule:        d.Rule,
		Reason:      d.Reason,
		Hint:        hint,
	}
}

// clientDenial refuses a client whose address ip no --allow-client range
// holds.
func clientDenial(ip string) *proxyError {
	reason := "hopscope does not serve clients from " + ip
	hint := "To allow them, start hopscope with --allow-client " + ip + "."
	return &proxyError{
		Status: http.StatusForbidden, ProxyStatus: "http_request_denied", Rule: "allow-client",
		Message: reason + ". " + hint, Reason: reason, Hint: hint,
	}
}

// classifyUpstreamError turns a failure to reach or talk to target into the
// answer the client gets: 403 for a policy refusal at dial time, 504 for
// timeouts, 502 for everything else, each with a reason a person can act on.
func classifyUpstreamError(err error, target string) *proxyError {
	var denied *deniedError
	if errors.As(err, &denied) {
		return denial(policy.Forward, target, denied.Decision)
	}
	pe := &proxyError{Status: http.StatusBadGateway, Err: err}
	var (
		dnsErr    *net.DNSError
		parentErr *parentProxyError
		verifyErr *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recordErr tls.RecordHeaderError
		notHTTP   *notHTTPError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout:
		pe.Status, pe.ProxyStatus = http.StatusGatewayTimeout, "dns_timeout"
		pe.Message = fmt.Sprintf("hopscope timed out resolving %s", dnsErr.Name)
	case errors.As(err, &dnsErr):
		pe.ProxyStatus = "dns_error"
		pe.Message = fmt.Sprintf("hopscope could not resolve the host %s (%s)", dnsErr.Name, dnsErr.Err)
	case errors.As(err, &parentErr):
		pe.ProxyStatus = "destination_unavailable"
		pe.Message = fmt.Sprintf("hopscope's parent proxy %s refused the tunnel to %s with %s", parentErr.Parent, target, parentErr.Status)
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid):
		pe.ProxyStatus = "tls_certificate_error"
		pe.Message = fmt.Sprintf("hopscope does not trust the TLS certificate of %s (%s). Pass its CA with --upstream-ca FILE, or --insecure-upstream to skip verification.", target, certReason(err))
	case errors.As(err, &notHTTP), strings.Contains(err.Error(), "malformed HTTP"), strings.Contains(err.Error(), "malformed MIME"):
		// The text tests catch http.Transport's untyped parse errors.
		pe.ProxyStatus = "http_protocol_error"
		pe.Message = fmt.Sprintf("%s answered with a malformed response, or not with HTTP at all", target)
	case errors.Is(err, errHeadTooLarge):
		pe.ProxyStatus = "http_response_header_section_size"
		pe.Message = fmt.Sprintf("%s answered with headers larger than --max-header-bytes", target)
	case errors.As(err, &recordErr):
		pe.ProxyStatus = "tls_protocol_error"
		pe.Message = fmt.Sprintf("%s did not answer with TLS", target)
	case errors.Is(err, syscall.ECONNREFUSED):
		pe.ProxyStatus = "connection_refused"
		pe.Message = fmt.Sprintf("%s refused the connection (nothing listens on that port?)", target)
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		pe.ProxyStatus = "destination_ip_unroutable"
		pe.Message = fmt.Sprintf("hopscope has no route to %s", target)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		pe.Status, pe.ProxyStatus = http.StatusGatewayTimeout, "connection_timeout"
		pe.Message = fmt.Sprintf("%s did not answer in time", target)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		pe.ProxyStatus = "connection_terminated"
		pe.Message = fmt.Sprintf("%s closed the connection before answering", target)
	default:
		pe.ProxyStatus = "destination_unavailable"
		pe.Message = fmt.Sprintf("hopscope could not exchange with %s", target)
	}
	return pe
}

// certReason extracts the verifier's own words, which say what is wrong
// (unknown authority, wrong name, expired) without the dial noise around it.
func certReason(err error) string {
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &verifyErr) {
		err = verifyErr.Err
	}
	return err.Error()
}

// header returns the headers of the proxy's answer.
func (e *proxyError) header(pseudonym string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Proxy-Status", formatProxyStatus(pseudonym, e.ProxyStatus, e.Message))
	return h
}

func (e *proxyError) body() string { return e.Message + "\n" }

// writeTo answers on a ResponseWriter.
func (e *proxyError) writeTo(w http.ResponseWriter, pseudonym string) {
	for k, v := range e.header(pseudonym) {
		w.Header()[k] = v
	}
	w.WriteHeader(e.Status)
	_, _ = io.WriteString(w, e.body())
}

// response builds the answer as an *http.Response, for goproxy's response
// hooks and for connections that were already hijacked.
func (e *proxyError) response(req *http.Request, pseudonym string) *http.Response {
	body := e.body()
	return &http.Response{
		Status:        strconv.Itoa(e.Status) + " " + http.StatusText(e.Status),
		StatusCode:    e.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        e.header(pseudonym),
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
		Close:         true,
	}
}

// formatProxyStatus writes an RFC 9209 Proxy-Status member. The details
// parameter is a structured-field string: printable ASCII with " and \
// escaped.
func formatProxyStatus(pseudonym, errType, details string) string {
	var b strings.Builder
	b.WriteString(pseudonym)
	if errType != "" {
		b.WriteString("; error=")
		b.WriteString(errType)
	}
	b.WriteString(`; details="`)
	for _, c := range details {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteRune(c)
		default:
			b.WriteByte('?')
		}
	}
	b.WriteByte('"')
	return b.String()
}
