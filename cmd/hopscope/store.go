package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/store"
)

// storeWanted reports whether anything reads the flow store: --har,
// --har-import and the web UI (--ui).
func storeWanted(cfg config.Config) bool {
	return cfg.HAR != "" || len(cfg.HARImport) > 0 || cfg.UI != ""
}

// checkStoreSettings refuses bad store settings, and a --har file that
// could not be written, before the proxy starts rather than at exit.
func checkStoreSettings(cfg config.Config) error {
	if _, err := cfg.StoreOptions(); err != nil {
		return err
	}
	return cfg.CheckHARFile()
}

// newFlowStore makes the flow store and loads the --har-import files
// into it, before the proxy starts; nil when nothing reads it. Attach it
// to the proxy's flows.
func newFlowStore(cfg config.Config) (*store.Store, []har.ImportStats, error) {
	if !storeWanted(cfg) {
		return nil, nil, nil
	}
	opts, err := cfg.StoreOptions()
	if err != nil {
		return nil, nil, err
	}
	st := store.New(opts)
	var loaded []har.ImportStats
	for _, path := range cfg.HARImport {
		stats, err := importHARFile(st, path)
		if err != nil {
			return nil, nil, err
		}
		loaded = append(loaded, stats)
	}
	return st, loaded, nil
}

func importHARFile(st *store.Store, path string) (har.ImportStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return har.ImportStats{}, config.UsageError{Msg: fmt.Sprintf("--har-import: %v", err)}
	}
	defer f.Close()
	h, err := har.Read(f)
	if err != nil {
		return har.ImportStats{}, config.UsageError{Msg: fmt.Sprintf("--har-import %s: %v", path, err)}
	}
	return har.Import(st, h), nil
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
