package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/store"
)

// storeWanted reports whether anything reads the flow store: --har (and
// the web UI).
func storeWanted(cfg config.Config) bool { return cfg.HAR != "" }

// checkStoreSettings refuses bad store settings, and a --har file that
// could not be written, before the proxy starts rather than at exit.
func checkStoreSettings(cfg config.Config) error {
	if _, err := cfg.StoreOptions(); err != nil {
		return err
	}
	return cfg.CheckHARFile()
}

// newFlowStore makes the flow store and subscribes it to the proxy's
// flows; nil when nothing reads it.
func newFlowStore(cfg config.Config, flows *flow.Bus) (*store.Store, error) {
	if !storeWanted(cfg) {
		return nil, nil
	}
	opts, err := cfg.StoreOptions()
	if err != nil {
		return nil, err
	}
	st := store.New(opts)
	st.Attach(flows)
	return st, nil
}

// writeHARFile writes st to path as HAR, through a temporary file renamed
// into place, so a crash never leaves half a file; 0600, because a HAR
// holds every cookie and password that crossed the proxy.
func writeHARFile(path string, st *store.Store) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hopscope-har-*")
	if err != nil {
		return fmt.Errorf("writing --har %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing left to remove
	if err := har.Write(tmp, st, har.Options{Version: version()}); err != nil {
		tmp.Close()
		return fmt.Errorf("writing --har %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing --har %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing --har %s: %w", path, err)
	}
	return nil
}
