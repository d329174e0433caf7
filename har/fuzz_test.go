package har

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hopscope/hopscope/store"
)

// FuzzImport feeds arbitrary files to Read and Import: nothing panics, the
// store keeps its bounds, and whatever was imported exports as HAR 1.2
// that reads back.
//
//	go test ./har -run '^$' -fuzz FuzzImport -fuzztime 60s
func FuzzImport(f *testing.F) {
	for _, name := range []string{"chrome-websocket.har", "websocket.golden.har"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"log":{"version":"1.2","entries":[{"_resourceType":"websocket","request":{"url":"::"},"_webSocketMessages":[{"type":"send","time":"x","opcode":99,"data":"!!"}]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		st := store.New(store.Options{MaxFlows: 50, MaxBytes: 1 << 20, ItemBytes: 4096})
		Import(st, h)
		if s := st.Stats(); s.Flows > 50 || s.Bytes > 1<<20 {
			t.Fatalf("import broke the bounds: %+v", s)
		}
		var out bytes.Buffer
		if err := Write(&out, st, Options{}); err != nil {
			t.Fatalf("export after import: %v", err)
		}
		if problems := Validate(out.Bytes()); len(problems) > 0 {
			t.Fatalf("export after import is not HAR 1.2: %v", problems)
		}
		if _, err := Read(bytes.NewReader(out.Bytes())); err != nil {
			t.Fatalf("export after import does not read back: %v", err)
		}
	})
}
