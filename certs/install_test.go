package certs

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/smallstep/truststore"
)

// A store that cannot be used says what to install or set, from the errors
// the real lookups return, not the library's wording.
func TestWhyUnavailableSaysWhatToDo(t *testing.T) {
	_, noCertutil := exec.LookPath("hopscope-test-no-such-certutil")
	t.Setenv("JAVA_HOME", "")
	_, noJava := truststore.NewJavaTrust()
	if noJava == nil {
		t.Fatal("truststore found Java without JAVA_HOME")
	}
	for _, tc := range []struct {
		store string
		err   error
		want  string
	}{
		{nssStore, noCertutil, "apt-get install libnss3-tools"},
		{javaStore, noJava, "set JAVA_HOME"},
		{systemStore, errors.New("first line\nsecond"), "first line"},
	} {
		got := whyUnavailable(tc.store, tc.err)
		if !strings.Contains(got, tc.want) || strings.Contains(got, "\n") {
			t.Errorf("%s: %q, want it to say %q", tc.store, got, tc.want)
		}
	}
}
