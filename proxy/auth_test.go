package proxy

import (
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Malformed htpasswd entries are refused with the file and line.
func TestHtpasswdRefusals(t *testing.T) {
	cases := map[string]string{
		"no-colon":          "alice\n",
		"empty user":        ":$2y$10$abcdefghijklmnopqrstuuOS6jFNFyVSFJLfZVbWM6hzgJq9QmYu.\n",
		"empty hash":        "alice:\n",
		"bad bcrypt":        "alice:$2y$xx$short\n",
		"bad {SHA}":         "alice:{SHA}not base64!\n",
		"short {SHA}":       "alice:{SHA}" + base64.StdEncoding.EncodeToString([]byte("short")) + "\n",
		"md5 (apr1)":        "alice:$apr1$salt$hash\n",
		"crypt":             "alice:abJnggxhB/yWI\n",
		"after a good line": "# users\n\nbob:{SHA}" + base64.StdEncoding.EncodeToString(make([]byte, sha1.Size)) + "\nalice\n",
	}
	for name, data := range cases {
		err := NewCredentials().AddHtpasswd([]byte(data), "users.htpasswd")
		if err == nil || !strings.Contains(err.Error(), "users.htpasswd:") {
			t.Errorf("%s: %v, want an error naming the file and line", name, err)
		}
	}
}

func TestCredentialsCheck(t *testing.T) {
	c := NewCredentials()
	if !c.Empty() {
		t.Fatal("new credentials are not empty")
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-b"), bcrypt.MinCost)
	sum := sha1.Sum([]byte("pw-s"))
	data := "b:" + string(hash) + "\ns:{SHA}" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	if err := c.AddHtpasswd([]byte(data), "f"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPair("p:pw-p:with-colon"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, pass string
		ok         bool
	}{
		{"b", "pw-b", true}, {"b", "pw-b", true}, {"b", "wrong", false},
		{"s", "pw-s", true}, {"s", "pw-b", false},
		{"p", "pw-p:with-colon", true}, {"p", "pw-p", false},
		{"nobody", "pw-b", false}, {"", "", false},
	}
	for _, tc := range cases {
		if got := c.Check(tc.user, tc.pass); got != tc.ok {
			t.Errorf("Check(%q, %q) = %v", tc.user, tc.pass, got)
		}
	}
	for _, bad := range []string{"nopassword", ":s3cret-value"} {
		err := c.AddPair(bad)
		if err == nil || strings.Contains(err.Error(), "s3cret-value") {
			t.Errorf("AddPair(%q): %v; want an error that does not repeat the password", bad, err)
		}
	}
}
