package config

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hopscope/hopscope/store"
)

func TestStoreSettings(t *testing.T) {
	cfg, err := Parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.StoreOptions()
	if err != nil || opts.MaxFlows != store.DefaultMaxFlows || opts.MaxBytes != store.DefaultMaxBytes || opts.ItemBytes != store.DefaultItemBytes {
		t.Fatalf("defaults: %+v, %v", opts, err)
	}

	path := writeFile(t, "hopscope.yaml", "store-flows: 50\nstore-bytes: 8MiB\nhar: from-file.har\n")
	cfg, err = Parse([]string{"--config", path, "--store-item-bytes", "1KiB", "--har", "flows.har"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	opts, err = cfg.StoreOptions()
	if err != nil || opts.MaxFlows != 50 || opts.MaxBytes != 8<<20 || opts.ItemBytes != 1024 || cfg.HAR != "flows.har" {
		t.Fatalf("file and flags: %+v, har %q, %v", opts, cfg.HAR, err)
	}

	cfg, _ = Parse([]string{"--store-item-bytes", "0"}, io.Discard)
	if opts, _ := cfg.StoreOptions(); opts.ItemBytes >= 0 {
		t.Errorf("--store-item-bytes 0 must keep no payloads, got ItemBytes %d", opts.ItemBytes)
	}

	for args, want := range map[string]string{
		"--store-flows 0":                            "--store-flows 0: must be at least 1",
		"--store-bytes 1000":                         "--store-bytes 1000: must be at least 1MiB",
		"--store-bytes 2MiB --store-item-bytes 3MiB": "--store-item-bytes 3145728: must be between 0 and --store-bytes",
	} {
		cfg, err := Parse(strings.Fields(args), io.Discard)
		if err == nil {
			_, err = cfg.StoreOptions()
		}
		var ue UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want a usage error saying %q", args, err, want)
		}
	}
}

func TestHARFileCheckedAtStart(t *testing.T) {
	ok := Config{storeConfig: storeConfig{HAR: filepath.Join(t.TempDir(), "out.har")}}
	if err := ok.CheckHARFile(); err != nil {
		t.Errorf("a writable directory: %v", err)
	}
	bad := Config{storeConfig: storeConfig{HAR: filepath.Join(t.TempDir(), "missing", "out.har")}}
	err := bad.CheckHARFile()
	if err == nil || !strings.Contains(err.Error(), "--har") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing directory: %v", err)
	}
}
