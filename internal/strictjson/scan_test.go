package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// nestedArrays is n arrays, each inside the one before: depth n.
func nestedArrays(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// objectOf is an object of n members k0..k(n-1), each value v.
func objectOf(n int, v string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", "k"+strconv.Itoa(i), v)
	}
	b.WriteByte('}')
	return b.String()
}

func TestScanBody(t *testing.T) {
	query := Rules{ExactIn: "query"}
	many := objectOf(20, "1")
	for _, tc := range []struct {
		note  string
		body  string
		rules Rules
		kind  FaultKind
		path  string
		name  bool
	}{
		{note: "a key spec", body: `{"name":"x","contentApi":{"default":{"get":true},"individual":{"blogs":{"get":true}}}}`},
		{note: "the same name in two objects", body: `{"a":{"x":1},"b":{"x":1},"x":[{"x":1},{"x":2}]}`},
		{note: "every kind of value", body: ` {"s":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","n":[0,-1,1.5,-0.0e+10,2E-3,1e1],"l":[true,false,null],"e":{},"a":[]} `},
		{note: "a top-level array", body: `[1,{"a":1},{"a":1}]`},
		{note: "a member twice", body: `{"name":"x","name":"y"}`, kind: FaultDuplicate, path: "name"},
		{note: "a member twice in another case", body: `{"name":"x","NAME":"y"}`, kind: FaultDuplicate, path: "NAME"},
		{note: "a member twice, folded as encoding/json folds (long s)", body: `{"service":"a","ſervice":"b"}`, kind: FaultDuplicate, path: "ſervice"},
		{note: "a member twice, one escaped", body: `{"name":"x","\u006eame":"y"}`, kind: FaultDuplicate, path: "name"},
		{note: "the empty name twice", body: `{"":1,"":2}`, kind: FaultDuplicate, path: `""`},
		{note: "the empty name twice in an object", body: `{"headers":{"":"a","":"b"}}`, kind: FaultDuplicate, path: "headers."},
		{note: "a nested member twice", body: `{"name":"x","contentApi":{"default":{"get":true},"default":{"post":true}}}`, kind: FaultDuplicate, path: "contentApi.default"},
		{note: "a member twice in an array's object", body: `{"keys":[{"header":"a"},{"header":"a","HEADER":"b"}]}`, kind: FaultDuplicate, path: "keys[1].HEADER"},
		{note: "a member twice after the set took over", body: many[:len(many)-1] + `,"K3":2}`, kind: FaultDuplicate, path: "K3"},
		{note: "the ninth member repeats the first", body: objectOf(8, "1")[:len(objectOf(8, "1"))-1] + `,"k0":2}`, kind: FaultDuplicate, path: "k0"},
		{note: "twenty distinct members", body: many},
		{note: "query names are compared exactly", body: `{"query":{"draftKey":"a","draftkey":"b"}}`, rules: query},
		{note: "query names twice", body: `{"query":{"draftKey":"a","draftKey":"b"}}`, rules: query, kind: FaultDuplicate, path: "query.draftKey"},
		{note: "a query object in another case is the query", body: `{"QUERY":{"a":"1","A":"2"}}`, rules: query},
		{note: "the exact rule is for the top-level member only", body: `{"x":{"query":{"a":1,"A":2}}}`, rules: query, kind: FaultDuplicate, path: "x.query.A"},
		{note: "other objects fold", body: `{"headers":{"Accept":"a","accept":"b"}}`, rules: query, kind: FaultDuplicate, path: "headers.accept"},
		{note: "16 levels", body: nestedArrays(16)},
		{note: "17 levels", body: nestedArrays(17), kind: FaultDepth},
		{note: "17 levels of objects", body: strings.Repeat(`{"a":`, 17) + "1" + strings.Repeat("}", 17), kind: FaultDepth},
		{note: "4096 members", body: objectOf(MaxMembers, "0")},
		{note: "4097 members", body: `{"x":` + objectOf(MaxMembers+1, "0") + `}`, kind: FaultMembers, path: "x"},
		{note: "4097 elements", body: `{"x":[` + strings.Repeat("0,", MaxMembers) + `0]}`, kind: FaultMembers, path: "x"},
		{note: "4097 elements at the top", body: `[` + strings.Repeat("0,", MaxMembers) + `0]`, kind: FaultMembers},
		{note: "invalid UTF-8 in a value", body: `{"name":"a` + "\xff" + `b"}`, kind: FaultText, path: "name"},
		{note: "invalid UTF-8 in an array", body: `{"a":["x","` + "\xc3" + `"]}`, kind: FaultText, path: "a[1]"},
		{note: "invalid UTF-8 in a member name", body: `{"contentApi":{"` + "\xff" + `":{}}}`, kind: FaultText, path: "contentApi", name: true},
		{note: "invalid UTF-8 in a top-level name", body: `{"` + "\xfe" + `":1}`, kind: FaultText, name: true},
		{note: "an overlong encoding", body: `{"a":"` + "\xc0\x80" + `"}`, kind: FaultText, path: "a"},
		{note: "a surrogate in UTF-8", body: `{"a":"` + "\xed\xa0\x80" + `"}`, kind: FaultText, path: "a"},
		{note: "an escaped NUL", body: `{"name":"a\u0000b"}`, kind: FaultText, path: "name"},
		{note: "an escaped NUL in a name", body: `{"a\u0000":1}`, kind: FaultText, name: true},
		{note: "a lone high surrogate", body: `{"a":"\ud800x"}`, kind: FaultText, path: "a"},
		{note: "a high surrogate and no low one", body: `{"a":"\ud800\u0041"}`, kind: FaultText, path: "a"},
		{note: "a lone low surrogate", body: `{"a":"\udc00"}`, kind: FaultText, path: "a"},
		{note: "a raw NUL", body: "{\"a\":\"\x00\"}", kind: FaultSyntax},
		{note: "empty", body: ``, kind: FaultSyntax},
		{note: "trailing data", body: `{}x`, kind: FaultSyntax},
		{note: "two values", body: `{}{}`, kind: FaultSyntax},
		{note: "unterminated", body: `{"a":"b`, kind: FaultSyntax},
		{note: "a name without a value", body: `{"a"}`, kind: FaultSyntax},
		{note: "a leading zero", body: `{"a":01}`, kind: FaultSyntax},
		{note: "a trailing comma", body: `[1,]`, kind: FaultSyntax},
		{note: "a trailing comma in an object", body: `{"a":1,}`, kind: FaultSyntax},
		{note: "a bare minus", body: `-`, kind: FaultSyntax},
		{note: "a bare fraction", body: `1.`, kind: FaultSyntax},
		{note: "a bare exponent", body: `1e`, kind: FaultSyntax},
		{note: "a short literal", body: `nul`, kind: FaultSyntax},
		{note: "a bad escape", body: `{"a":"\x"}`, kind: FaultSyntax},
		{note: "a short unicode escape", body: `{"a":"\u12"}`, kind: FaultSyntax},
		{note: "a single quote", body: `{'a':1}`, kind: FaultSyntax},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := Scan([]byte(tc.body), tc.rules)
			want := Fault{Kind: tc.kind, Path: tc.path, Name: tc.name}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			// The scan and encoding/json agree on what is JSON.
			if valid := json.Valid([]byte(tc.body)); valid != (tc.kind != FaultSyntax) {
				t.Fatalf("json.Valid %v, scan %+v", valid, got)
			}
		})
	}
}

// Shapes of a body for the cost measurements: flat (one object of long
// strings), wide (objects of as many members as allowed, in an array) and
// deep (objects nested as deep as allowed, repeated). Each is built to
// about size bytes.
var bodyShapes = []struct {
	name  string
	build func(size int) []byte
}{
	{"flat", func(size int) []byte {
		n := max(size/256, 1)
		return []byte(objectOf(min(n, MaxMembers), `"`+strings.Repeat("x", 248)+`"`))
	}},
	{"wide", func(size int) []byte {
		obj := objectOf(min(max(size/8, 1), 2000), "0")
		n := max(size/len(obj), 1)
		return []byte("[" + strings.TrimSuffix(strings.Repeat(obj+",", n), ",") + "]")
	}},
	{"deep", func(size int) []byte {
		nest := strings.Repeat(`{"abcdefgh":`, MaxDepth-2) + "1" + strings.Repeat("}", MaxDepth-2)
		n := max(size/len(nest), 1)
		chunk := min(n, 1000)
		list := "[" + strings.TrimSuffix(strings.Repeat(nest+",", chunk), ",") + "]"
		return []byte("[" + strings.TrimSuffix(strings.Repeat(list+",", max(n/chunk, 1)), ",") + "]")
	}},
}

var bodySizes = []int{1 << 10, 10 << 10, 100 << 10, 1 << 20}

// BenchmarkScanBody is the scan's cost against body size and shape:
// ns/B (also MB/s) stays flat from 1 KiB to 1 MiB, the scan is linear.
func BenchmarkScanBody(b *testing.B) {
	for _, shape := range bodyShapes {
		for _, size := range bodySizes {
			body := shape.build(size)
			if f := Scan(body, Rules{}); f.Kind != FaultNone {
				b.Fatalf("%s %d: %+v", shape.name, size, f)
			}
			b.Run(fmt.Sprintf("%s/%dKiB", shape.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					Scan(body, Rules{})
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(body)), "ns/B")
			})
		}
	}
	// The two bodies of the quadratic scan, refused early.
	for _, tc := range hostileBodies() {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				Scan(tc.body, Rules{})
			}
		})
	}
}

type hostileBody struct {
	name string
	body []byte
	kind FaultKind
}

// hostileBodies are the bodies a quadratic scan chokes on: 1 MB of objects
// nested 10,000 deep, and one object of 60,000 members.
func hostileBodies() []hostileBody {
	name := strings.Repeat("n", 94)
	deep := strings.Repeat(`{"`+name+`":`, 10_000) + "1" + strings.Repeat("}", 10_000)
	return []hostileBody{
		{"deep-10000", []byte(deep), FaultDepth},
		{"members-60000", []byte(objectOf(60_000, "0")), FaultMembers},
	}
}

// allocated is the bytes f allocates (TotalAlloc; other goroutines' counts
// too, which only makes the bound stricter).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestScanBodyMemoryIsLinear: the scan allocates at most a small multiple
// of the body's size, whatever its shape (the worst is the wide one: the
// set of an object of tiny members costs some 100 bytes a member, over its
// growth), and little for the hostile bodies, which it refuses at the first
// bound they cross (the quadratic scan took 4.7 GB for the deep one).
func TestScanBodyMemoryIsLinear(t *testing.T) {
	for _, tc := range hostileBodies() {
		t.Run(tc.name, func(t *testing.T) {
			var f Fault
			if n := allocated(func() { f = Scan(tc.body, Rules{}) }); n > 1<<20 {
				t.Errorf("the scan of %d bytes allocated %d bytes", len(tc.body), n)
			}
			if f.Kind != tc.kind {
				t.Errorf("fault %+v, want kind %d", f, tc.kind)
			}
		})
	}
	for _, shape := range bodyShapes {
		for _, size := range bodySizes {
			body := shape.build(size)
			t.Run(fmt.Sprintf("%s/%dKiB", shape.name, size>>10), func(t *testing.T) {
				n := allocated(func() { Scan(body, Rules{}) })
				if limit := 16*uint64(len(body)) + 64<<10; n > limit {
					t.Errorf("the scan of %d bytes allocated %d bytes, over %d", len(body), n, limit)
				}
			})
		}
	}
}

// FuzzScanBody: the scan never panics; a body it passes is JSON, valid
// UTF-8 without NUL, nests at most MaxDepth deep, and names no member
// twice (by an independent, quadratic check); and a body encoding/json
// calls valid is never called malformed by the scan.
func FuzzScanBody(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"A":2}`, `{"query":{"a":1,"A":2}}`, `[[[]]]`, `{"a":"\u0000"}`,
		`{"a":"\ud83d\ude00"}`, `{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"K1":0}`, "{\"\xff\":1}"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, exactQuery bool) {
		rules := Rules{}
		if exactQuery {
			rules.ExactIn = "query"
		}
		got := Scan(body, rules)
		valid := json.Valid(body)
		if valid && got.Kind == FaultSyntax {
			t.Fatalf("valid JSON called malformed: %q", body)
		}
		if got.Kind != FaultNone {
			return
		}
		if !valid {
			t.Fatalf("malformed JSON passed: %q", body)
		}
		if !utf8.Valid(body) {
			t.Fatalf("invalid UTF-8 passed: %q", body)
		}
		if dup := referenceDuplicate(t, body, rules); dup != "" {
			t.Fatalf("%s twice passed: %q", dup, body)
		}
	})
}

// referenceDuplicate finds a member named twice, a NUL in a string, or a
// nesting deeper than MaxDepth, token by token, comparing every name
// with every earlier one of its object.
func referenceDuplicate(t *testing.T, body []byte, rules Rules) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		object, exact, wantName bool
		names                   []string
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return "a NUL"
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantName {
			if name, ok := tok.(string); ok {
				for _, seen := range top.names {
					if seen == name || !top.exact && strings.EqualFold(seen, name) {
						return name
					}
				}
				top.names = append(top.names, name)
				top.wantName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			exact := tok == json.Delim('{') && len(stack) == 1 && rules.ExactIn != "" && stack[0].object &&
				strings.EqualFold(stack[0].names[len(stack[0].names)-1], rules.ExactIn)
			stack = append(stack, &level{object: tok == json.Delim('{'), exact: exact, wantName: true})
			if len(stack) > MaxDepth {
				return "a nesting too deep"
			}
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantName = true
		}
	}
}

// TestAllowNUL: a NUL escape is a text fault unless the rules take it as
// text (a decision-log line, whose path may decode %00); a lone surrogate
// is a fault either way.
func TestAllowNUL(t *testing.T) {
	for _, tc := range []struct {
		note  string
		body  string
		rules Rules
		want  FaultKind
	}{
		{"NUL refused", `{"path":"/a\u0000b"}`, Rules{}, FaultText},
		{"NUL allowed", `{"path":"/a\u0000b"}`, Rules{AllowNUL: true}, FaultNone},
		{"lone surrogate with NUL allowed", `{"path":"/a\udcffb"}`, Rules{AllowNUL: true}, FaultText},
		{"NUL in a name with NUL allowed", `{"a\u0000":1}`, Rules{AllowNUL: true}, FaultNone},
	} {
		t.Run(tc.note, func(t *testing.T) {
			if got := Scan([]byte(tc.body), tc.rules).Kind; got != tc.want {
				t.Errorf("Scan(%s) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
}
