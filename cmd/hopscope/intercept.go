package main

import (
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/intercept"
	"github.com/hopscope/hopscope/proxy"
)

// newInterceptor starts the interception engine when --intercept or
// breakpoints ask for it, and gives it to the proxy. nil: off.
func newInterceptor(cfg config.Config, opts *proxy.Options, logger zerolog.Logger) (*intercept.Engine, error) {
	iopts, on, err := cfg.InterceptOptions()
	if err != nil || !on {
		return nil, err
	}
	engine, err := intercept.New(iopts)
	if err != nil {
		return nil, config.UsageError{Msg: err.Error()}
	}
	opts.Interceptor = engine
	logger.Info().Str("event", "intercept").Int("breakpoints", len(iopts.Breakpoints)).Str("timeout", iopts.Timeout.String()).
		Msg("interception on: WebSocket messages are held until complete, and paused at breakpoints")
	return engine, nil
}
