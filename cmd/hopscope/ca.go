package main

import (
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/config"
)

// runCA is `hopscope ca SUBCOMMAND`.
func runCA(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return config.UsageError{Msg: "hopscope ca: give init, path, export, install or uninstall"}
	}
	sub := args[0]
	switch sub {
	case "init", "path", "export", "install", "uninstall":
	default:
		return config.UsageError{Msg: fmt.Sprintf("hopscope ca: unknown subcommand %q; give init, path, export, install or uninstall first, then its flags (hopscope ca init --ca-dir DIR)", sub)}
	}
	fs := flag.NewFlagSet("hopscope ca "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	caDir := fs.String("ca-dir", "", "CA directory")
	force := fs.Bool("force", false, "replace an existing CA (init)")
	der := fs.Bool("der", false, "write DER instead of PEM (export)")
	if err := fs.Parse(args[1:]); err != nil {
		return config.UsageError{Msg: fmt.Sprintf("hopscope ca %s: %v", sub, err)}
	}
	if fs.NArg() > 0 {
		return config.UsageError{Msg: fmt.Sprintf("hopscope ca %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	dir, err := certs.Dir(*caDir)
	if err != nil {
		return err
	}
	switch sub {
	case "path":
		fmt.Fprintln(stdout, dir)
		return nil
	case "init":
		ca, err := certs.Create(dir, *force)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created the hopscope CA in %s\nSHA-256 fingerprint %s\nTrust it with: hopscope ca install\n", dir, ca.Fingerprint())
		return nil
	}
	ca, err := certs.Load(dir)
	if errors.Is(err, certs.ErrNotFound) {
		return fmt.Errorf("%w; create one with: hopscope ca init", err)
	}
	if err != nil {
		return err
	}
	switch sub {
	case "export":
		if *der {
			_, err = stdout.Write(ca.DER())
		} else {
			err = pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: ca.DER()})
		}
		return err
	case "install", "uninstall":
		results := ca.Install
		if sub == "uninstall" {
			results = ca.Uninstall
		}
		var failed []string
		for _, r := range results() {
			fmt.Fprintf(stdout, "%-24s %s\n", r.Store+":", r.Detail)
			if !r.Done && r.Store == "system" {
				failed = append(failed, r.Store)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("could not %s the CA in the %s store", sub, strings.Join(failed, ", "))
		}
		return nil
	}
	return nil
}
