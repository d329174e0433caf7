package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hopscope/hopscope/store"
)

// storeConfig holds the flow store's settings: how much it keeps, and the
// HAR file it is written to on exit.
type storeConfig struct {
	HAR            string   `yaml:"har"`
	HARImport      []string `yaml:"har-import"`
	StoreFlows     int      `yaml:"store-flows"`
	StoreBytes     byteSize `yaml:"store-bytes"`
	StoreItemBytes byteSize `yaml:"store-item-bytes"`
}

func defaultStoreConfig() storeConfig {
	return storeConfig{
		StoreFlows:     store.DefaultMaxFlows,
		StoreBytes:     store.DefaultMaxBytes,
		StoreItemBytes: store.DefaultItemBytes,
	}
}

func addStoreFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.HAR, "har", cfg.HAR, "on exit, write every flow hopscope kept (WebSocket messages included) to `file` as HAR 1.2; it holds cookies and passwords, so it is written 0600")
	fs.Var(&listFlag{values: &cfg.HARImport}, "har-import", "load the flows of a HAR `file` (Chrome's, hopscope's; WebSocket messages included) into the flow store at start, to view them with --ui (repeatable)")
	fs.IntVar(&cfg.StoreFlows, "store-flows", cfg.StoreFlows, "flows the flow store (--ui, --har) keeps; the oldest finished go first")
	fs.Var(&cfg.StoreBytes, "store-bytes", "`size` the flow store may hold (bodies, messages, headers), e.g. 256MiB; the oldest messages and flows go first")
	fs.Var(&cfg.StoreItemBytes, "store-item-bytes", "`size` kept of each body and WebSocket message in the flow store (the rest is counted and hashed), e.g. 64KiB")
}

// StoreOptions checks the flow store's settings.
func (cfg Config) StoreOptions() (store.Options, error) {
	if cfg.StoreFlows <= 0 {
		return store.Options{}, UsageError{Msg: fmt.Sprintf("--store-flows %d: must be at least 1", cfg.StoreFlows)}
	}
	if cfg.StoreBytes < 1<<20 {
		return store.Options{}, UsageError{Msg: fmt.Sprintf("--store-bytes %d: must be at least 1MiB", cfg.StoreBytes)}
	}
	if cfg.StoreItemBytes < 0 || int64(cfg.StoreItemBytes) > int64(cfg.StoreBytes) {
		return store.Options{}, UsageError{Msg: fmt.Sprintf("--store-item-bytes %d: must be between 0 and --store-bytes (%d)", cfg.StoreItemBytes, cfg.StoreBytes)}
	}
	item := int(cfg.StoreItemBytes)
	if item == 0 {
		item = -1 // keep no payloads (store.Options' 0 means the default)
	}
	return store.Options{MaxFlows: cfg.StoreFlows, MaxBytes: int64(cfg.StoreBytes), ItemBytes: item}, nil
}

// CheckHARFile makes sure --har can be written, at start rather than
// after an hour of capture.
func (cfg Config) CheckHARFile() error {
	if cfg.HAR == "" {
		return nil
	}
	dir := filepath.Dir(cfg.HAR)
	f, err := os.CreateTemp(dir, ".hopscope-har-check-*")
	if err != nil {
		return UsageError{Msg: fmt.Sprintf("--har %s: cannot write in %s: %v", cfg.HAR, dir, err)}
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}
