package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/replay"
)

const replayUsage = `Usage:
  hopscope replay FILE.har [--listen ADDR] [--match order|message] [--timing fast|original]
      serve the recording as a mock server until interrupted
  hopscope replay FILE.har --against URL [--wait DURATION] [--ca FILE | --insecure]
      resend the recorded requests and client messages to a live server and
      show where its answers differ (exit status 1 when they do)`

// errDiffers is the exit status of a replay against a live server whose
// answers differ from the recording.
var errDiffers = errors.New("the live answers differ from the recording")

// runReplay is `hopscope replay`.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hopscope replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:8090", "`address` the mock server listens on")
	match := fs.String("match", replay.MatchOrder, "how a WebSocket client's message finds its answers: order (the Nth message gets what followed the Nth recorded one) or message (the recorded message with the same payload, JSON compared as values)")
	timing := fs.String("timing", replay.TimingFast, "fast (answer at once) or original (keep the recorded gaps)")
	against := fs.String("against", "", "replay as the client against the live server at `URL` (scheme and host replace the recorded ones) and show the differences")
	wait := fs.Duration("wait", 2*time.Second, "with --against, how long to wait for each recorded answer")
	caFile := fs.String("ca", "", "with --against an https:// URL, PEM `file` of roots to trust besides the system's")
	insecure := fs.Bool("insecure", false, "with --against an https:// URL, do not verify its certificate (dangerous)")
	file, rest := "", args
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		file, rest = args[0], args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, replayUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return config.UsageError{Msg: "hopscope replay: " + err.Error()}
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return config.UsageError{Msg: fmt.Sprintf("hopscope replay: unexpected argument %q", fs.Arg(0))}
	}
	if file == "" {
		return config.UsageError{Msg: "hopscope replay: give the HAR file to replay\n" + replayUsage}
	}
	rec, err := replay.Load(file)
	if err != nil {
		return err
	}
	if *against != "" {
		target, err := url.Parse(*against)
		if err != nil || target.Host == "" {
			return config.UsageError{Msg: fmt.Sprintf("hopscope replay: --against %q: want a URL such as http://127.0.0.1:8080", *against)}
		}
		tlsConf, err := replayTLS(*caFile, *insecure)
		if err != nil {
			return err
		}
		report, err := rec.Against(ctx, replay.AgainstOptions{Target: target, Wait: *wait, TLS: tlsConf})
		if report != nil {
			fmt.Fprint(stdout, report)
			fmt.Fprintf(stdout, "%d differences\n", report.Differences)
		}
		if err != nil {
			return err
		}
		if report.Differences > 0 {
			return errDiffers
		}
		return nil
	}
	logger := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
	mock, err := replay.NewServer(rec, replay.Options{Match: *match, Timing: *timing, Log: logger})
	if err != nil {
		return config.UsageError{Msg: "hopscope replay: " + err.Error()}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	fmt.Fprintf(stdout, "replaying %s on http://%s/ (%s, %s; match %s, timing %s)\n",
		file, ln.Addr(), countOf(len(rec.Exchanges), "exchange", "exchanges"),
		countOf(len(rec.Sessions), "WebSocket session", "WebSocket sessions"), *match, *timing)
	srv := &http.Server{Handler: mock, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		mock.Close()
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mock.Close() // hijacked WebSockets are not the server's to close
	err = srv.Shutdown(shutdownCtx)
	<-served
	return err
}

// runRecord is `hopscope record --out FILE [serve flags]`: the proxy, with
// every flow written to FILE as HAR when it stops (--har FILE).
// recordUsage is what hopscope record --help prints.
const recordUsage = `Usage:
  hopscope record --out FILE.har [flags]
      run the proxy and, when it stops (Ctrl-C), write every flow it kept,
      WebSocket messages and their times included, to FILE.har; the flags
      are the proxy's (hopscope --help); replay it with hopscope replay FILE.har
`

func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	out, rest := "", make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Fprint(stdout, recordUsage)
			return flag.ErrHelp
		case a == "--out" || a == "-out":
			if i+1 == len(args) {
				return config.UsageError{Msg: "hopscope record: --out needs a file"}
			}
			out = args[i+1]
			i++
		case strings.HasPrefix(a, "--out=") || strings.HasPrefix(a, "-out="):
			_, out, _ = strings.Cut(a, "=")
		default:
			rest = append(rest, a)
		}
	}
	if out == "" {
		return config.UsageError{Msg: "hopscope record: give --out FILE.har (other flags are the proxy's, see hopscope --help)"}
	}
	cfg, err := config.Parse(append(rest, "--har", out), stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recording through %s to %s (written when hopscope stops)\n", cfg.Listen, out)
	return serve(ctx, cfg, stderr)
}

// replayTLS is the client TLS configuration for --against.
func replayTLS(caFile string, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{InsecureSkipVerify: insecure} // #nosec: only when asked for, and said to be dangerous
	if caFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, config.UsageError{Msg: fmt.Sprintf("--ca %s: no PEM certificate in it", caFile)}
	}
	conf.RootCAs = roots
	return conf, nil
}

// countOf writes n with the noun's singular or plural, as a person would.
func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
