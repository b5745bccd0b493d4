package keystore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
)

// seedFile loads keys.json content against goodServices with the fake
// keys policy.
func seedFile(t *testing.T, content string) ([]*keystore.Key, error) {
	t.Helper()
	dir := writeData(t, map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": content})
	d, err := keystore.LoadDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	return keystore.LoadSeedKeys(t.Context(), dir, d, time.Now().UTC(), &keystoretest.Authorizer{})
}

// manyKeys is n valid seed keys k-0… with secrets s-0…, joined by sep,
// with key i replaced by override[i] where given.
func manyKeys(n int, sep string, override map[int]string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"id":"k-%d","service":"svc","secret":"s-%d","contentApi":{"default":{"get":true}}}`, i, i)
		if o, ok := override[i]; ok {
			items[i] = o
		}
	}
	return "[" + strings.Join(items, sep) + "]"
}

// TestSeedKeyErrorsNameTheKey: every way a seed file can be wrong names
// the file, the key's index and field, and why; a position in the file is
// "line L col C", the line and column encoding/json names (checked
// against DecodeStrict's for the same files). The file is streamed in batches checked in parallel,
// and the error is still the first failing key's (several per batch and
// across batches: 2,000 keys span 4 batches).
func TestSeedKeyErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		note    string
		content string
		field   string // exact
		reason  string // contained
	}{
		{"empty file", ``, "", "truncated or empty JSON"},
		{"white space only", " \n\t", "", "truncated or empty JSON"},
		{"truncated in a key", `[{"id":"a","serv`, "", "truncated or empty JSON"},
		{"truncated after a key", `[{"id":"a","service":"svc","secret":"s"},`, "", "truncated or empty JSON"},
		{"an object, not a list", `{"id":"a"}`, "", "wrong type (object"},
		{"a string, not a list", ` "keys"`, "", "wrong type (string"},
		{"not JSON at all", `keys`, "line 1 col 2", "invalid JSON"},
		{"trailing data", `[] []`, "", "trailing data after the JSON value"},
		{"trailing comma", `[{"id":"a","service":"svc","secret":"s"},]`, "line 1 col 43", "invalid JSON"},
		{"leading comma", `[,{"id":"a"}]`, "line 1 col 3", "invalid JSON"},
		{"syntax error in a key", manyKeys(3, ",\n", map[int]string{2: `{"id":"k-2","service" "svc"}`}), "[2] line 3 col 24", "invalid JSON"},
		{"two values in one element", `[{"id":"a"} {"id":"b"}]`, "[0] line 1 col 14", "invalid JSON"},
		{"brackets crossed", manyKeys(3, ",\n", map[int]string{1: `{"id":"k-1","contentApi":{"individual":{"a":{]}}}`}), "[1] line 2 col 47", "invalid JSON"},
		{"closing brace out of place", `[{"id":"a"}}]`, "[0] line 1 col 13", "invalid JSON"},
		{"wrong type", manyKeys(2, ",\n", map[int]string{1: `{"id":"k-1","service":"svc","secret":"s","contentApi":{"default":{"get":"yes"}}}`}), "[1].contentApi.default.get", "line 2 col 78: wrong type (string, want bool)"},
		{"unknown field", `[{"id":"k","service":"svc","secret":"s","contentApi":{"default":{"gett":true}}}]`, "[0].gett", "unknown field"},
		{"member named twice", `[{"id":"k","service":"svc","secret":"s","contentApi":{"default":{"get":false,"get":true}}}]`, "[0].contentApi.default.get", "appears more than once"},
		{"member named twice in another case", `[{"id":"k","service":"svc","secret":"s","Secret":"t"}]`, "[0].Secret", "appears more than once"},
		{"NUL in a name", `[{"id":"k","service":"svc","secret":"s","name":"a\u0000b"}]`, "[0].name", "UTF-8 text without NUL"},
		{"not UTF-8", "[{\"id\":\"k\",\"service\":\"svc\",\"secret\":\"s\",\"name\":\"a\xffb\"}]", "[0].name", "UTF-8 text without NUL"},
		{"too deep", `[{"id":"k","service":"svc","secret":"s","contentApi":{"individual":{"a":` + strings.Repeat(`[`, 13) + strings.Repeat(`]`, 13) + `}}}]`, "[0]", "nests deeper than 16 levels"},
		{"bad id", manyKeys(2000, ",", map[int]string{1500: `{"id":"bad id","service":"svc","secret":"x"}`}), "[1500].id", `"bad id" is not a valid id`},
		{"unknown service", manyKeys(2000, ",", map[int]string{700: `{"id":"x","service":"nope","secret":"x"}`}), "[700].service", `unknown service "nope"`},
		{"policy violation", manyKeys(2000, ",", map[int]string{1999: `{"id":"x","service":"svc","secret":"x","contentApi":{"individual":{"blogs":{"getAllClosed":true}}}}`}), "[1999].contentApi.individual.blogs.getAllClosed", "requires get"},
		{"bad endpoint", `[{"id":"x","service":"svc","secret":"x","contentApi":{"individual":{"Blogs":{"get":true}}}}]`, "[0].contentApi.individual.Blogs", "endpoint name"},
		{"bad hash", `[{"id":"x","service":"svc","secret":"sha256:00"}]`, "[0].secret", "64 hex digits"},
		{"duplicate id names the first", manyKeys(2000, ",", map[int]string{1800: `{"id":"k-3","service":"svc","secret":"x"}`}), "[1800].id", `duplicate key id "k-3"`},
		{"duplicate secret names the first", manyKeys(2000, ",", map[int]string{1300: `{"id":"x","service":"svc","secret":"s-1299"}`}), "[1300].secret", `same secret as key "k-1299"`},
		// Several faults: the first key's is reported, whatever the batch
		// or the kind of check that finds it.
		{"first of several faults", manyKeys(2000, ",", map[int]string{
			600: `{"id":"x","service":"svc","secret":"s-5"}`, 601: `{"id":"bad id"}`, 1200: `{"id":"y","service":"nope"}`, 1999: `{`,
		}), "[600].secret", `same secret as key "k-5"`},
		{"a duplicate id before a syntax error", manyKeys(1000, ",", map[int]string{10: `{"id":"k-9","service":"svc","secret":"x"}`, 900: `{"id":`}), "[10].id", `duplicate key id "k-9"`},
		{"an element's fault before its duplicate id", manyKeys(10, ",", map[int]string{5: `{"id":"k-1","service":"nope","secret":"x"}`}), "[5].id", `duplicate key id "k-1"`},
		{"a fault before the id is checked", manyKeys(10, ",", map[int]string{5: `{"id":"k-1","service":"svc","secret":"x","x":1}`}), "[5].x", `unknown field`},
	}
	for _, procs := range []int{1, 4} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/procs=%d", tc.note, procs), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				keys, err := seedFile(t, tc.content)
				var de *keystore.DataError
				if !errors.As(err, &de) {
					t.Fatalf("want a DataError, got %v (%d keys)", err, len(keys))
				}
				if !strings.HasSuffix(de.File, "keys.json") || de.Field != tc.field || !strings.Contains(de.Reason, tc.reason) {
					t.Errorf("got file %q field %q reason %q; want keys.json field %q reason containing %q", de.File, de.Field, de.Reason, tc.field, tc.reason)
				}
			})
		}
	}
}

// TestSeedKeysLoadInFileOrder: the keys come back in file order with
// their fields, whatever the batches and workers; null and [] seed none.
func TestSeedKeysLoadInFileOrder(t *testing.T) {
	for _, tc := range []struct {
		content string
		n       int
	}{{"null", 0}, {" [ ] ", 0}, {manyKeys(1, "", nil), 1}, {manyKeys(5000, ",\n ", nil), 5000}} {
		keys, err := seedFile(t, tc.content)
		if err != nil || len(keys) != tc.n {
			t.Fatalf("%.20q: %d keys, %v; want %d", tc.content, len(keys), err, tc.n)
		}
		for i, k := range keys {
			if k.ID != fmt.Sprintf("k-%d", i) || k.Service != "svc" || !k.ContentAPI.Default.Get || k.CreatedBy != "seed" || k.Revision != 1 {
				t.Fatalf("key %d = %+v", i, k)
			}
		}
	}
}

// TestSeedPositionsAgreeWithDecodeStrict: a syntax error's line and
// column are those the whole-file decoder names.
func TestSeedPositionsAgreeWithDecodeStrict(t *testing.T) {
	for _, content := range []string{
		manyKeys(3, ",\n", map[int]string{2: `{"id":"k-2","service" "svc"}`}),
		manyKeys(3, ",\r\n  ", map[int]string{1: `{"id":"k-1","contentApi":{"default":{"get":tru}}}`}),
		"[\n\n" + manyKeys(2, ",", map[int]string{1: `{"id":1e}`})[1:],
		manyKeys(3, ",\n", map[int]string{1: `{"id":"k-1","contentApi":{"individual":{"a":{]}}}`}),
		manyKeys(3, ",\n", map[int]string{1: `{"id":"k-1"}}`}),
		manyKeys(3, ",\n", map[int]string{0: `{"id":"k-1",}`}),
	} {
		var v []map[string]any
		want := keystore.DecodeStrict("keys.json", []byte(content), &v)
		var wde *keystore.DataError
		if !errors.As(want, &wde) {
			t.Fatalf("DecodeStrict: %v", want)
		}
		_, err := seedFile(t, content)
		var de *keystore.DataError
		if !errors.As(err, &de) || !strings.HasSuffix(de.Field, " "+wde.Field) {
			t.Errorf("%q: got %v; want the position %q", content, err, wde.Field)
		}
	}
}

// TestSeedFileUnreadable: a keys.json that cannot be read is an error;
// a missing one seeds nothing.
func TestSeedFileUnreadable(t *testing.T) {
	dir := writeData(t, map[string]string{"services.json": goodServices, "members.json": goodMembers})
	d, err := keystore.LoadDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := keystore.LoadSeedKeys(t.Context(), dir, d, time.Now(), &keystoretest.Authorizer{}); err != nil || keys != nil {
		t.Fatalf("missing keys.json: %v, %v", keys, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = keystore.LoadSeedKeys(t.Context(), dir, d, time.Now(), &keystoretest.Authorizer{})
	var de *keystore.DataError
	if !errors.As(err, &de) {
		t.Fatalf("keys.json a directory: %v", err)
	}
}
