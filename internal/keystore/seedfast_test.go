package keystore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/strictjson"
)

// checkSeedParser fails when parseSeedKey accepts an element that
// strictjson faults, or decodes it otherwise than encoding/json with
// unknown fields refused; it reports whether the parser accepted it.
func checkSeedParser(t *testing.T, elem []byte) bool {
	t.Helper()
	var fast seedKey
	if !parseSeedKey(elem, &fast) {
		return false
	}
	if f := strictjson.Scan(elem, strictjson.Rules{}); f.Kind != strictjson.FaultNone {
		t.Fatalf("%s: the parser accepted what strictjson refuses: %+v", elem, f)
	}
	var slow seedKey
	dec := json.NewDecoder(bytes.NewReader(elem))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&slow); err != nil {
		t.Fatalf("%s: the parser accepted what encoding/json refuses: %v", elem, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%s:\nparser        %+v\nencoding/json %+v", elem, fast, slow)
	}
	return true
}

var seedParserCorpus = []string{
	`{"id":"k","service":"svc","name":"n","secret":"s","createdBy":"me","contentApi":{"default":{"get":true,"getAllDrafts":false},"individual":{"blogs":{"get":true,"post":true}}},"managementApi":{"getMedia":true,"getService":false}}`,
	` { "id" : "k" , "contentApi" : { "individual" : { } } } `,
	`{"contentApi":{"individual":{},"default":{}}}`,
	`{}`,
	`{"id":"k\"q"}`,
	`{"ID":"k"}`,
	`{"id":null}`,
	`{"id":1}`,
	`{"id":"ä"}`,
	`{"contentApi":null}`,
	`{"contentApi":{"individual":null}}`,
	`{"contentApi":{"default":{"get":1}}}`,
	`{"contentApi":{"default":{"Get":true}}}`,
	`{"createdAt":"2024-01-01T00:00:00Z"}`,
	`{"x":1}`,
	`[]`,
	`null`,
	`"k"`,
	`{"managementApi":{"getApis":true,"getMembers":true,"deleteMedia":false}}`,
	`{"contentApi":{"individual":{"a\u0062":{"get":true}}}}`,
	`{"id":"a","id":"b"}`,
	`{"contentApi":{"default":{"get":true,"get":false}}}`,
	`{"contentApi":{"individual":{"blogs":{},"blogs":{"get":true}}}}`,
	`{"contentApi":{"individual":{"blogs":{},"Blogs":{"get":true}}}}`,
	"{\"name\":\"a\tb\"}",
	"{\"name\":\"a\xffb\"}",
	"{\"name\":\"\xe2\x80\xae\"}",
	`{"id":"k"} x`,
	`{"id":"k",}`,
	`{"contentApi":{"default":{"get":truex}}}`,
}

// FuzzSeedParser: what the parser decodes, encoding/json decodes alike.
func FuzzSeedParser(f *testing.F) {
	for _, s := range seedParserCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, elem []byte) { checkSeedParser(t, elem) })
}

// TestSeedParserAgreesWithEncodingJSON: random seed keys in spellings the
// parser takes and ones it must leave to encoding/json (other cases,
// escapes, null, numbers, unknown members, times, odd white space) decode
// alike wherever the parser accepts them; and it accepts the common ones.
func TestSeedParserAgreesWithEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	ws := func() string { return pick("", "", "", " ", "\n\t", "\r\n ") }
	name := func(n string) string {
		switch rng.IntN(80) {
		case 0:
			return strings.ToUpper(n[:1]) + n[1:]
		case 1:
			return `\u00` + fmt.Sprintf("%02x", n[0]) + n[1:]
		case 2:
			return n + "x"
		}
		return n
	}
	str := func() string {
		if rng.IntN(200) == 0 {
			return `"` + pick("a\tb", "a\xffb", "\x00") + `"`
		}
		return `"` + pick("k", "svc", "ä ü", "", "bench key 7", "k-1", "svc-2", "s3cr3t", "a\\\"b", "\\u0041") + `"`
	}
	obj := func(members []string) string {
		if len(members) > 0 && rng.IntN(100) == 0 {
			members = append(members, members[rng.IntN(len(members))]) // a member twice
		}
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		return "{" + ws() + strings.Join(members, ws()+","+ws()) + ws() + "}"
	}
	value := func(typed string) string {
		if rng.IntN(150) == 0 {
			return pick("null", "1", "[]", `"x"`, "true", "{}")
		}
		return typed
	}
	perms := func(flags []string) string {
		var m []string
		for _, f := range flags {
			if rng.IntN(3) > 0 {
				m = append(m, `"`+name(f)+`"`+ws()+":"+ws()+value(pick("true", "false")))
			}
		}
		return obj(m)
	}
	content := []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}
	mgmt := []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia", "postMedia", "deleteMedia", "getMembers", "getApis", "getService"}
	accepted := 0
	const n = 20000
	for range n {
		var m []string
		for _, f := range []string{"id", "service", "name", "secret", "createdBy"} {
			if rng.IntN(5) > 0 {
				m = append(m, `"`+name(f)+`":`+value(str()))
			}
		}
		if rng.IntN(4) > 0 {
			var c []string
			if rng.IntN(3) > 0 {
				c = append(c, `"`+name("default")+`":`+value(perms(content)))
			}
			if rng.IntN(2) > 0 {
				var ind []string
				for j := range rng.IntN(4) {
					ind = append(ind, fmt.Sprintf(`"%s%d":%s`, pick("blogs", "news", "a\\u0062", "Blogs", "ä"), j, value(perms(content))))
				}
				c = append(c, `"`+name("individual")+`":`+value(obj(ind)))
			}
			m = append(m, `"`+name("contentApi")+`":`+value(obj(c)))
		}
		if rng.IntN(3) > 0 {
			m = append(m, `"`+name("managementApi")+`":`+value(perms(mgmt)))
		}
		if rng.IntN(30) == 0 {
			m = append(m, `"createdAt":"2024-05-01T10:00:00+02:00"`)
		}
		if checkSeedParser(t, []byte(ws()+obj(m)+ws())) {
			accepted++
		}
	}
	// The common spellings are most of the corpus; a parser that gave up
	// on everything would pass the check above.
	if accepted < n/10 {
		t.Errorf("the parser accepted %d of %d elements", accepted, n)
	}
	t.Logf("accepted %d of %d", accepted, n)
}
