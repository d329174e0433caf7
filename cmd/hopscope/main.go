// Command hopscope runs the hopscope proxy. See README.md for the flags and
// the event log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
)

func main() {
	// Millisecond timestamps; zerolog keeps this setting in a package
	// variable, so only main, which owns the process, sets it.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	var usage config.UsageError
	fmt.Fprintln(os.Stderr, "hopscope:", err)
	if errors.As(err, &usage) {
		os.Exit(2)
	}
	os.Exit(1)
}
