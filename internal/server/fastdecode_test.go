package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// strictDecide decodes body as decodeWith does: encoding/json, unknown
// fields refused, nothing after the object.
func strictDecide(body []byte) (decideBody, error) {
	var b decideBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return b, errors.New("data after the object")
	}
	return b, nil
}

var fastDecodeCases = []struct {
	note string
	body string
	fast bool // the fast path takes it (else encoding/json decides)
}{
	{"typical", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs/abc?draftKey=x","apiKey":"team-demo-read-key"}`, true},
	{"every field", `{"service":"s","api":"management","method":"PATCH","path":"/p","query":{"a":"1","b":""},"apiKey":"k","headers":{"X-MICROCMS-API-KEY":"k"},"clientIp":"203.0.113.7"}`, true},
	{"whitespace", " {\n\t\"service\" : \"s\" ,\r\n \"path\":\"/p\" } \n", true},
	{"empty object", `{}`, true},
	{"nulls", `{"service":null,"apiKey":null,"query":null,"headers":null}`, true},
	{"empty maps", `{"query":{},"headers":{}}`, true},
	{"escape", `{"service":"te\u0061m-demo"}`, false},
	{"escaped quote", `{"path":"/a\"b"}`, false},
	{"non-ASCII", `{"path":"/api/v1/ブログ"}`, false},
	{"invalid UTF-8", "{\"path\":\"/\xff\"}", false},
	{"control byte", "{\"path\":\"/\x01\"}", false},
	{"other spelling", `{"Service":"s"}`, false},
	{"unknown field", `{"service":"s","extra":1}`, false},
	{"number", `{"service":1}`, false},
	{"bool", `{"apiKey":true}`, false},
	{"array", `{"query":["a"]}`, false},
	{"nested object", `{"query":{"a":{"b":"c"}}}`, false},
	{"null in a map", `{"headers":{"a":null}}`, false},
	{"trailing data", `{"service":"s"} {}`, false},
	{"trailing comma", `{"service":"s",}`, false},
	{"unterminated", `{"service":"s"`, false},
	{"not an object", `["service"]`, false},
	{"empty", ``, false},
	{"duplicate member", `{"service":"a","service":"b"}`, false},
}

// TestFastDecideBody: the fast path takes the common shapes and leaves
// everything else to encoding/json; what it takes decodes exactly as
// encoding/json (strict) decodes it.
func TestFastDecideBody(t *testing.T) {
	for _, tc := range fastDecodeCases {
		t.Run(tc.note, func(t *testing.T) {
			var got decideBody
			ok := fastDecideBody([]byte(tc.body), &got)
			if ok != tc.fast {
				t.Fatalf("fast path took it: %v, want %v", ok, tc.fast)
			}
			if !ok {
				return
			}
			want, err := strictDecide([]byte(tc.body))
			if err != nil {
				t.Fatalf("fast path took a body encoding/json refuses: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fast %+v, encoding/json %+v", got, want)
			}
		})
	}
}

// FuzzFastDecideBody: for any body the fast path takes, encoding/json
// (strict) takes it too and yields the same decideBody.
func FuzzFastDecideBody(f *testing.F) {
	for _, tc := range fastDecodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got decideBody
		if !fastDecideBody(body, &got) {
			return
		}
		want, err := strictDecide(body)
		if err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", body, got, want)
		}
	})
}
