package config

import (
	"reflect"
	"testing"
)

// strip-upgrade, the tinyproxy profile's old name, still sets the same.
func TestTinyproxyProfileAlias(t *testing.T) {
	byName, byAlias := Default(), Default()
	if err := ApplyProfile(&byName, "tinyproxy"); err != nil {
		t.Fatal(err)
	}
	if err := ApplyProfile(&byAlias, "strip-upgrade"); err != nil {
		t.Fatal(err)
	}
	byName.Profile, byAlias.Profile = nil, nil
	if !reflect.DeepEqual(byName, byAlias) {
		t.Errorf("strip-upgrade sets %+v, tinyproxy %+v", byAlias, byName)
	}
	if byName.Persona != "tinyproxy" || byName.ConnectPorts != "*" || byName.Upgrade != "strip-close" {
		t.Errorf("tinyproxy profile: persona %q, connect-ports %q, upgrade %q; want tinyproxy, *, strip-close", byName.Persona, byName.ConnectPorts, byName.Upgrade)
	}
}
