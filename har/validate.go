package har

import (
	"encoding/json"
	"fmt"
	"time"
)

// The HAR 1.2 structure (http://www.softwareishard.com/blog/har-12-spec/):
// for each object, its fields with their JSON type and whether they are
// required. Fields outside the spec must start with "_".
type field struct {
	typ      string // string, number, boolean, object, array
	required bool
	object   string // the object's (or array element's) schema name
}

var harSchema = map[string]map[string]field{
	"root": {"log": {"object", true, "log"}},
	"log": {
		"version": {"string", true, ""}, "creator": {"object", true, "creator"}, "browser": {"object", false, "creator"},
		"pages": {"array", false, "page"}, "entries": {"array", true, "entry"}, "comment": {"string", false, ""},
	},
	"creator": {"name": {"string", true, ""}, "version": {"string", true, ""}, "comment": {"string", false, ""}},
	"page": {
		"startedDateTime": {"string", true, ""}, "id": {"string", true, ""}, "title": {"string", true, ""},
		"pageTimings": {"object", true, ""}, "comment": {"string", false, ""},
	},
	"entry": {
		"pageref": {"string", false, ""}, "startedDateTime": {"string", true, ""}, "time": {"number", true, ""},
		"request": {"object", true, "request"}, "response": {"object", true, "response"}, "cache": {"object", true, "cache"},
		"timings": {"object", true, "timings"}, "serverIPAddress": {"string", false, ""}, "connection": {"string", false, ""},
		"comment": {"string", false, ""},
	},
	"request": {
		"method": {"string", true, ""}, "url": {"string", true, ""}, "httpVersion": {"string", true, ""},
		"cookies": {"array", true, "cookie"}, "headers": {"array", true, "namevalue"}, "queryString": {"array", true, "namevalue"},
		"postData": {"object", false, "postData"}, "headersSize": {"number", true, ""}, "bodySize": {"number", true, ""},
		"comment": {"string", false, ""},
	},
	"response": {
		"status": {"number", true, ""}, "statusText": {"string", true, ""}, "httpVersion": {"string", true, ""},
		"cookies": {"array", true, "cookie"}, "headers": {"array", true, "namevalue"}, "content": {"object", true, "content"},
		"redirectURL": {"string", true, ""}, "headersSize": {"number", true, ""}, "bodySize": {"number", true, ""},
		"comment": {"string", false, ""},
	},
	"cookie": {
		"name": {"string", true, ""}, "value": {"string", true, ""}, "path": {"string", false, ""}, "domain": {"string", false, ""},
		"expires": {"string", false, ""}, "httpOnly": {"boolean", false, ""}, "secure": {"boolean", false, ""}, "comment": {"string", false, ""},
	},
	"namevalue": {"name": {"string", true, ""}, "value": {"string", true, ""}, "comment": {"string", false, ""}},
	"postData": {
		"mimeType": {"string", true, ""}, "params": {"array", false, ""}, "text": {"string", false, ""}, "comment": {"string", false, ""},
	},
	"content": {
		"size": {"number", true, ""}, "compression": {"number", false, ""}, "mimeType": {"string", true, ""},
		"text": {"string", false, ""}, "encoding": {"string", false, ""}, "comment": {"string", false, ""},
	},
	"cache": {"beforeRequest": {"object", false, ""}, "afterRequest": {"object", false, ""}, "comment": {"string", false, ""}},
	"timings": {
		"blocked": {"number", false, ""}, "dns": {"number", false, ""}, "connect": {"number", false, ""},
		"send": {"number", true, ""}, "wait": {"number", true, ""}, "receive": {"number", true, ""},
		"ssl": {"number", false, ""}, "comment": {"string", false, ""},
	},
}

// Validate lists every way data breaks the HAR 1.2 structure: a required
// field missing, a field of the wrong JSON type, a startedDateTime that is
// not ISO 8601, a field outside the spec whose name does not start with
// "_". nil means data is HAR 1.2. Tests of anything that writes HAR (the
// web UI's download, a user's own tool) can use it.
func Validate(data []byte) []string {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return []string{fmt.Sprintf("not a JSON object: %v", err)}
	}
	return validateDoc(doc)
}

func validateDoc(doc map[string]any) []string {
	var problems []string
	var check func(path, schema string, obj map[string]any)
	check = func(path, schema string, obj map[string]any) {
		fields := harSchema[schema]
		for name, f := range fields {
			v, ok := obj[name]
			if !ok {
				if f.required {
					problems = append(problems, fmt.Sprintf("%s: %s missing", path, name))
				}
				continue
			}
			where := path + "." + name
			if jsonType(v) != f.typ {
				problems = append(problems, fmt.Sprintf("%s: want %s, have %s", where, f.typ, jsonType(v)))
				continue
			}
			if name == "startedDateTime" {
				if _, err := time.Parse(time.RFC3339Nano, v.(string)); err != nil {
					problems = append(problems, fmt.Sprintf("%s: not ISO 8601: %v", where, err))
				}
			}
			if f.object == "" {
				continue
			}
			switch v := v.(type) {
			case map[string]any:
				check(where, f.object, v)
			case []any:
				for i, el := range v {
					m, ok := el.(map[string]any)
					if !ok {
						problems = append(problems, fmt.Sprintf("%s[%d]: want object, have %s", where, i, jsonType(el)))
						continue
					}
					check(fmt.Sprintf("%s[%d]", where, i), f.object, m)
				}
			}
		}
		for name := range obj {
			if _, ok := fields[name]; !ok && (len(name) == 0 || name[0] != '_') {
				problems = append(problems, fmt.Sprintf("%s.%s: not a HAR 1.2 field and not a custom _field", path, name))
			}
		}
	}
	check("har", "root", doc)
	// name entries paths as people read them
	for i, p := range problems {
		problems[i] = trimPrefix(p, "har.log.")
	}
	return problems
}

func trimPrefix(s, prefix string) string {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
