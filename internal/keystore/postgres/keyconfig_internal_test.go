package postgres

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// viaJSON is what decodeKeyConfig must equal: encoding/json, then Clone.
func viaJSON(b []byte) (keyConfig, error) {
	var c keyConfig
	err := json.Unmarshal(b, &c)
	c.ContentAPI = c.ContentAPI.Clone()
	return c, err
}

// configCorpus: what PostgreSQL sends for jsonb written by keygate, and the
// inputs where the hand parser must step aside or fail like encoding/json.
var configCorpus = []struct {
	name string
	in   string
	fast bool // the hand parser takes it
}{
	{"jsonb text of a default-only key", `{"contentApi": {"default": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {}}, "managementApi": {"getApis": false, "getMedia": true, "postMedia": false, "getMembers": false, "getService": true, "deleteMedia": false, "getContents": true, "patchContentStatus": false, "patchContentCreatedBy": true}}`, true},
	{"individual entries", `{"contentApi": {"default": {"get": false}, "individual": {"blogs": {"get": true}, "contact": {"post": true, "put": true}}}, "managementApi": {}}`, true},
	{"compact, as json.Marshal writes it", `{"contentApi":{"default":{"get":true,"getAllDrafts":true},"individual":{}},"managementApi":{"getContents":true}}`, true},
	{"whitespace everywhere", " \t\n{ \"contentApi\" :\r{ \"default\" : { \"get\" : true } } , \"managementApi\" : { } } \n", true},
	{"empty object", `{}`, true},
	{"repeated endpoint: the last wins", `{"contentApi": {"individual": {"a": {"get": true, "post": true}, "a": {"put": true}}}}`, false},
	{"repeated default merges flags", `{"contentApi": {"default": {"get": true}, "default": {"post": true}}}`, false},
	{"repeated individual merges maps", `{"contentApi": {"individual": {"a": {"get": true}}, "individual": {"b": {"get": true}}}}`, false},
	{"null individual", `{"contentApi": {"individual": null}}`, false},
	{"null flag", `{"contentApi": {"default": {"get": null}}}`, false},
	{"differently cased key", `{"ContentApi": {"default": {"GET": true}}}`, false},
	{"unknown key", `{"contentApi": {"default": {"get": true}}, "extra": 1}`, false},
	{"escaped endpoint", `{"contentApi": {"individual": {"bl\u006fgs": {"get": true}}}}`, false},
	{"non-ASCII endpoint", `{"contentApi": {"individual": {"blögs": {"get": true}}}}`, false},
	{"number flag", `{"contentApi": {"default": {"get": 1}}}`, false},
	{"trailing bytes", `{"contentApi": {}} x`, false},
	{"truncated", `{"contentApi": {"default": {"get": tru`, false},
	{"bare literal", `true`, false},
	{"trailing comma", `{"contentApi": {"default": {"get": true,}}}`, false},
	{"missing colon", `{"contentApi" {}}`, false},
	{"literal run-on", `{"contentApi": {"default": {"get": truex}}}`, false},
	{"empty input", ``, false},
}

func TestDecodeKeyConfigEqualsEncodingJSON(t *testing.T) {
	for _, tc := range configCorpus {
		t.Run(tc.name, func(t *testing.T) {
			var fast keyConfig
			if got := keystore.ParseKeyConfig([]byte(tc.in), &fast.ContentAPI, &fast.ManagementAPI); got != tc.fast {
				t.Errorf("hand parser took it = %v, want %v", got, tc.fast)
			}
			want, wantErr := viaJSON([]byte(tc.in))
			var got keyConfig
			gotErr := decodeKeyConfig([]byte(tc.in), &got)
			if (gotErr != nil) != (wantErr != nil) {
				t.Fatalf("error = %v, encoding/json's = %v", gotErr, wantErr)
			}
			if wantErr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, encoding/json %+v", got, want)
			}
			if tc.fast && !reflect.DeepEqual(fast, want) {
				t.Fatalf("hand parser %+v, encoding/json %+v", fast, want)
			}
		})
	}
}

// The individual map is the key's own and nil when empty: a key loaded from
// the database compares equal to the one written (keystore keeps nil).
func TestDecodeKeyConfigIndividualNilWhenEmpty(t *testing.T) {
	var c keyConfig
	if err := decodeKeyConfig([]byte(`{"contentApi": {"individual": {}}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.ContentAPI.Individual != nil {
		t.Fatalf("individual = %#v, want nil", c.ContentAPI.Individual)
	}
}

// Every configuration keygate writes takes the hand parser, in both the
// form json.Marshal writes and the form jsonb sends back (keys reordered,
// spaces after ':' and ',').
func TestDecodeKeyConfigTakesWhatKeygateWrites(t *testing.T) {
	k := &keystore.Key{
		ContentAPI: keystore.ContentAPI{
			Default:    keystore.ContentPerms{Get: true, GetAllDrafts: true},
			Individual: map[string]keystore.ContentPerms{"blogs": {Get: true}, "contact-form_2": {Post: true, Delete: true}},
		},
		ManagementAPI: keystore.ManagementPerms{GetMedia: true, PatchContentCreatedBy: true},
	}
	b, err := keyConfiguration(k)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	spaced, err := json.MarshalIndent(generic, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{b, spaced} {
		var c keyConfig
		if !keystore.ParseKeyConfig(in, &c.ContentAPI, &c.ManagementAPI) {
			t.Fatalf("hand parser refused %s", in)
		}
		if !reflect.DeepEqual(c.ContentAPI, k.ContentAPI) || c.ManagementAPI != k.ManagementAPI {
			t.Fatalf("decoded %+v from %s", c, in)
		}
	}
}

func FuzzDecodeKeyConfig(f *testing.F) {
	for _, tc := range configCorpus {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := viaJSON(in)
		var got keyConfig
		gotErr := decodeKeyConfig(in, &got)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("%q: error = %v, encoding/json's = %v", in, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decoded %+v, encoding/json %+v", in, got, want)
		}
	})
}

func BenchmarkDecodeKeyConfig(b *testing.B) {
	in := []byte(`{"contentApi": {"default": {"get": false, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "individual": {"news": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "blogs": {"get": true, "put": false, "post": false, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}, "contact": {"get": false, "put": false, "post": true, "patch": false, "delete": false, "getAllClosed": false, "getAllDrafts": false}}}, "managementApi": {"getApis": false, "getMedia": false, "postMedia": false, "getMembers": false, "getService": false, "deleteMedia": false, "getContents": false, "patchContentStatus": false, "patchContentCreatedBy": false}}`)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c keyConfig
			if err := decodeKeyConfig(in, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := viaJSON(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
