package compare

import (
	"strings"
	"testing"
)

func TestDiffMarksWhatDiffers(t *testing.T) {
	a := Result{Status: "HTTP/1.1 200 OK", Fields: []Field{{"Via", "1.1 a"}, {"X-Cache", "MISS"}}, Body: "length, empty", Conn: "open"}
	b := Result{Status: "HTTP/1.1 200 OK", Fields: []Field{{"Via", "1.1 b"}}, Body: "length, empty", Conn: "closed"}
	if Equal(a, b) {
		t.Fatal("Equal says two different results are the same")
	}
	if !Equal(a, a) {
		t.Fatal("Equal says a result differs from itself")
	}
	got := Diff("left", a, "right", b)
	for _, want := range []string{
		"  status: HTTP/1.1 200 OK",
		"|   Via: 1.1 a",
		"| connection: open",
		"<   X-Cache: MISS",
	} {
		found := false
		for _, line := range strings.Split(got, "\n") {
			if strings.HasPrefix(line, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("diff lacks a line starting %q:\n%s", want, got)
		}
	}
}

func TestNormaliserReplacesHostParts(t *testing.T) {
	n := Normaliser{Hosts: []string{"box"}, IgnoreVersions: true, origin: "127.0.0.1:4321", proxy: "127.0.0.1:3128"}
	r := n.result(Result{
		Fields: []Field{{"Date", "Thu, 03 Dec 2026 09:00:00 GMT"}, {"Via", "1.1 box (squid/6.6)"}, {"X-Cache-Lookup", "MISS from box:3128"}},
		Origin: &OriginView{RequestLine: "GET http://127.0.0.1:4321/ HTTP/1.1"},
	})
	want := []string{
		"status: (no answer)",
		"  Date: <date>",
		"  Via: 1.1 <host> (squid/<version>)",
		"  X-Cache-Lookup: MISS from <host>:<proxy-port>",
		"origin: GET http://<origin>/ HTTP/1.1",
		`origin body:  ""`,
	}
	if got := r.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("normalised lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
