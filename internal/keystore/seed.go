package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/strictjson"
)

// SeedChecker answers the seed keys' policy question: the violations the
// keys policy computes for a create of the key's configuration (see
// LoadSeedKeys). It must be safe for concurrent use: LoadSeedKeys asks
// from several goroutines.
type SeedChecker interface {
	SeedViolations(ctx context.Context, req KeyRequest) ([]Violation, error)
}

// SeedAuthorizer is an Authorizer that checks seed keys in bulk: the
// policy engine's authorizer judges a whole seeding with one policy
// revision and evaluates each distinct configuration once. Any other
// Authorizer is asked AuthorizeKeys once per seed key, in file order.
type SeedAuthorizer interface {
	Authorizer
	SeedChecker(ctx context.Context) (SeedChecker, error)
}

// Seeding pipeline sizes: a batch is cut at seedBatchKeys elements or
// seedBatchBytes bytes, and a few batches per worker are in flight, so
// the file is never held whole: memory is the keys plus a few MiB.
const (
	seedBatchKeys  = 512
	seedBatchBytes = 256 << 10
	seedReadBuffer = 1 << 20
)

// seedBatch is consecutive elements of the top-level array of keys.json,
// copied from the file (a space after each).
type seedBatch struct {
	seq   int // batch number, from 0
	first int // array index of its first element
	buf   []byte
	// Element j is buf[start[j]:end[j]], from file offset at[j].
	start, end []int
	at         []int64
	// tail, on the last batch only, is a fault of the array itself
	// (syntax, truncation, nesting, trailing data) after its elements.
	tail *seedFault
}

// reset empties b for reuse as batch seq from array index first.
func (b *seedBatch) reset(seq, first int) {
	*b = seedBatch{seq: seq, first: first, buf: b.buf[:0], start: b.start[:0], end: b.end[:0], at: b.at[:0]}
}

func (b *seedBatch) add(elem []byte, at int64) {
	b.start = append(b.start, len(b.buf))
	b.buf = append(b.buf, elem...)
	b.end = append(b.end, len(b.buf))
	b.buf = append(b.buf, ' ')
	b.at = append(b.at, at)
}

// seedFault is a DataError whose position in the file (off >= 0) is
// rendered as "line L col C" once the load has failed: counting lines is
// only paid for on an error.
type seedFault struct {
	err *DataError
	off int64
	// inReason puts the position before the reason (a wrong type: the
	// field is the JSON path); otherwise it follows the field.
	inReason bool
}

// seedStage orders the checks of one seed key as LoadSeedKeys makes
// them, so that a key failing several reports the first.
type seedStage uint8

const (
	stageOK      seedStage = iota
	stageDecode            // the element's JSON
	stageID                // the id's shape
	stageService           // a known service
	stageSpec              // the configuration's shape
	stagePolicy            // the keys policy's violations
	stageSecret            // the secret or its hash
)

// seedResult is what a worker made of a batch: a key for each element
// before the first failing one; that one's stage, id (after stageID) and
// fault; and, for an Authorizer asked in order, the request of each
// element up to and including a failing one that got that far.
type seedResult struct {
	seq, first int
	bytes      int // of the batch's elements
	keys       []*Key
	reqs       []KeyRequest
	stage      seedStage
	failID     string
	fail       *seedFault
	tail       *seedFault
}

// LoadSeedKeys reads data/keys.json (optional: a missing file seeds no keys).
//
// The rule "getAllDrafts/getAllClosed need get" is the keys policy's, not
// Go's: every seed key is put to authz as a create without a member. The
// verdict is then a 401, but the policy computes the configuration's
// violations for every create whatever the verdict (policies/README.md),
// and any violation fails the load naming the key, endpoint and flag. An
// Authorizer that is a SeedAuthorizer is asked for those violations
// directly (SeedChecker); any other, AuthorizeKeys per key.
//
// The file is streamed: its top-level array is cut into elements as it is
// read, and GOMAXPROCS workers decode, check and hash batches of them.
// Each element is held to the rules of request bodies (internal/strictjson:
// nesting at most strictjson.MaxDepth deep counting the array, no member
// named twice, UTF-8 text without NUL) and decoded with unknown fields
// refused. The checks across keys (each id and each secret once) run in
// file order, and the error returned is that of the first failing key,
// named by its index, as a load of one key after the other reports it; a
// fault of the array itself (a syntax error between keys, a truncated
// file, trailing data) is reported when every key before it is valid.
func LoadSeedKeys(ctx context.Context, dir string, d *Directory, now time.Time, authz Authorizer) ([]*Key, error) {
	path := filepath.Join(dir, keysFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &DataError{File: path, Reason: "cannot read", Err: err}
	}
	defer f.Close()

	l := &seedLoader{path: path, plans: d.plans(), now: now, authz: authz}
	if st, err := f.Stat(); err == nil {
		l.size = st.Size()
	}
	if sa, ok := authz.(SeedAuthorizer); ok {
		if l.checker, err = sa.SeedChecker(ctx); err != nil {
			return nil, &DataError{File: path, Reason: "the keys policy could not check the seed keys", Err: err}
		}
	}
	keys, fault := l.run(ctx, f)
	if fault != nil {
		return nil, fault.render(path)
	}
	return keys, nil
}

// render fills in the file and the position.
func (f *seedFault) render(path string) *DataError {
	de := f.err
	de.File = path
	if f.off < 0 {
		return de
	}
	pos := fileLineCol(path, f.off)
	switch {
	case f.inReason:
		de.Reason = pos + ": " + de.Reason
	case de.Field == "":
		de.Field = pos
	default:
		de.Field += " " + pos
	}
	return de
}

// fileLineCol is lineCol for an offset in a file, read again up to it to
// count its lines.
func fileLineCol(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("byte %d", off)
	}
	defer f.Close()
	r := io.LimitReader(f, off)
	buf := make([]byte, seedReadBuffer)
	line, lastNL, pos := 1, int64(-1), int64(0)
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		line += bytes.Count(chunk, []byte("\n"))
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			lastNL = pos + int64(i)
		}
		pos += int64(n)
		if err != nil {
			break
		}
	}
	return fmt.Sprintf("line %d col %d", line, off-lastNL)
}

// seedLoader is one LoadSeedKeys.
type seedLoader struct {
	// batches are recycled: a worker done with one gives it back for
	// the splitter to fill again (the keys hold no byte of it).
	batches sync.Pool
	path    string
	size    int64 // of the file, when known
	plans   map[string]string
	now     time.Time
	authz   Authorizer
	checker SeedChecker // nil: authz.AuthorizeKeys per key, in order
}

func (l *seedLoader) run(ctx context.Context, r io.Reader) ([]*Key, *seedFault) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, runtime.GOMAXPROCS(0))
	batches := make(chan *seedBatch, 2*workers)
	results := make(chan *seedResult, 2*workers)

	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		l.split(ctx, r, batches)
	})
	var workersWG sync.WaitGroup
	for range workers {
		workersWG.Go(func() {
			var sc strictjson.Scanner
			for b := range batches {
				res := l.work(ctx, &sc, b)
				l.batches.Put(b)
				select {
				case results <- res:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() {
		workersWG.Wait()
		close(results)
	}()
	defer func() {
		cancel()
		for range results { // until the workers and the splitter end
		}
		wg.Wait()
	}()

	var (
		keys    []*Key
		ids     = make(map[string]struct{})
		hashes  = make(map[[32]byte]string)
		pending = map[int]*seedResult{}
		next    = 0
	)
	for res := range results {
		pending[res.seq] = res
		for {
			res, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if res.seq == 0 && l.size > 0 && res.bytes > 0 && len(res.keys) > 0 {
				// The first batch tells the size of a key in this file:
				// the tables are sized once for the file, not grown a
				// score of times.
				n := int(min(l.size/int64(res.bytes)*int64(len(res.keys)), 1<<26))
				keys = make([]*Key, 0, n)
				ids = make(map[string]struct{}, n)
				hashes = make(map[[32]byte]string, n)
			}
			if fault := l.accept(ctx, res, &keys, ids, hashes); fault != nil {
				return nil, fault
			}
			if res.tail != nil {
				return nil, res.tail
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, &seedFault{err: &DataError{Reason: "seeding stopped", Err: err}, off: -1}
	}
	return keys, nil
}

// accept takes a worker's keys in file order: each id once and each secret
// once (naming the first key that had it), the keys policy where it is
// asked in order, and the worker's failure in its place among them.
func (l *seedLoader) accept(ctx context.Context, res *seedResult, keys *[]*Key, ids map[string]struct{}, hashes map[[32]byte]string) *seedFault {
	n := len(res.keys)
	if res.fail != nil {
		n++
	}
	for i := range n {
		idx := res.first + i
		stage, id := stageOK, res.failID
		if i < len(res.keys) {
			id = res.keys[i].ID
		} else {
			stage = res.stage
		}
		if stage == stageDecode || stage == stageID {
			return res.fail
		}
		if _, dup := ids[id]; dup {
			return fieldFault(idx, "id", fmt.Sprintf("duplicate key id %q", id))
		}
		if stage == stageService || stage == stageSpec {
			return res.fail
		}
		if l.checker == nil {
			if fault := l.askInOrder(ctx, idx, &res.reqs[i]); fault != nil {
				return fault
			}
		}
		if stage != stageOK {
			return res.fail
		}
		k := res.keys[i]
		if other, dup := hashes[k.secretHash]; dup {
			return fieldFault(idx, "secret", fmt.Sprintf("same secret as key %q", other))
		}
		ids[id] = struct{}{}
		hashes[k.secretHash] = k.ID
		*keys = append(*keys, k)
	}
	return nil
}

// askInOrder puts one seed key to an Authorizer that has no SeedChecker.
func (l *seedLoader) askInOrder(ctx context.Context, idx int, req *KeyRequest) *seedFault {
	dec, err := l.authz.AuthorizeKeys(ctx, *req)
	if err != nil {
		return policyFailure(idx, err)
	}
	return violationFault(idx, dec.Violations)
}

func policyFailure(idx int, err error) *seedFault {
	return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d].contentApi", idx), Reason: "the keys policy could not check it", Err: err}, off: -1}
}

func violationFault(idx int, violations []Violation) *seedFault {
	if len(violations) == 0 {
		return nil
	}
	v := violations[0]
	where := "contentApi.default"
	if v.Endpoint != "default" {
		where = "contentApi.individual." + v.Endpoint
	}
	return fieldFault(idx, where+"."+v.Flag, v.Message)
}

func fieldFault(idx int, field, reason string) *seedFault {
	return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d].%s", idx, field), Reason: reason}, off: -1}
}

// work decodes, checks and hashes a batch, up to its first failing element.
func (l *seedLoader) work(ctx context.Context, sc *strictjson.Scanner, b *seedBatch) *seedResult {
	res := &seedResult{seq: b.seq, first: b.first, bytes: len(b.buf), tail: b.tail, keys: make([]*Key, 0, len(b.start))}
	if l.checker == nil {
		res.reqs = make([]KeyRequest, 0, len(b.start))
	}
	for j := range b.start {
		e := l.element(ctx, sc, b, j)
		if l.checker == nil && (e.stage == stageOK || e.stage > stagePolicy) {
			res.reqs = append(res.reqs, e.req) // got to the policy's turn
		}
		if e.fault != nil {
			res.stage, res.failID, res.fail = e.stage, e.id, e.fault
			res.tail = nil // the element's fault comes first
			return res
		}
		res.keys = append(res.keys, e.key)
	}
	return res
}

// seedElem is one element's outcome: its key, or the stage that failed
// and why; its id once well-formed; the policy request where the policy
// is asked in order.
type seedElem struct {
	key   *Key
	id    string
	req   KeyRequest
	stage seedStage
	fault *seedFault
}

func (l *seedLoader) element(ctx context.Context, sc *strictjson.Scanner, b *seedBatch, j int) seedElem {
	idx := b.first + j
	elem := b.buf[b.start[j]:b.end[j]]
	fail := func(stage seedStage, f *seedFault) seedElem { return seedElem{stage: stage, fault: f} }
	var sk seedKey
	if f := decodeSeed(sc, elem, b.at[j], idx, &sk); f != nil {
		return fail(stageDecode, f)
	}
	if !idPattern.MatchString(sk.ID) {
		return fail(stageID, fieldFault(idx, "id", fmt.Sprintf("%q is not a valid id", sk.ID)))
	}
	e := seedElem{id: sk.ID}
	failAt := func(stage seedStage, f *seedFault) seedElem {
		e.stage, e.fault = stage, f
		return e
	}
	plan, known := l.plans[sk.Service]
	if !known {
		return failAt(stageService, fieldFault(idx, "service", fmt.Sprintf("unknown service %q", sk.Service)))
	}
	if len(sk.ContentAPI.Individual) == 0 {
		sk.ContentAPI.Individual = nil // as Clone leaves an empty map
	}
	spec := &KeySpec{Name: sk.Name, ContentAPI: sk.ContentAPI, ManagementAPI: sk.ManagementAPI}
	if field, reason, ok := checkSpec(spec); !ok {
		return failAt(stageSpec, fieldFault(idx, field, reason))
	}
	e.req = KeyRequest{Action: ActionCreate, Service: ServiceInput{ID: sk.Service, Plan: plan}, Key: spec}
	if l.checker != nil {
		v, err := l.checker.SeedViolations(ctx, e.req)
		if err != nil {
			return failAt(stagePolicy, policyFailure(idx, err))
		}
		if f := violationFault(idx, v); f != nil {
			return failAt(stagePolicy, f)
		}
	}
	h, err := parseHashOrPlain(sk.Secret)
	if err != nil {
		return failAt(stageSecret, fieldFault(idx, "secret", err.Error()))
	}
	created := sk.CreatedAt.UTC()
	if sk.CreatedAt.IsZero() {
		created = l.now
	}
	createdBy := sk.CreatedBy
	if createdBy == "" {
		createdBy = "seed"
	}
	e.key = &Key{
		ID: sk.ID, Service: sk.Service, Name: sk.Name,
		ContentAPI: sk.ContentAPI, ManagementAPI: sk.ManagementAPI,
		CreatedBy: createdBy, CreatedAt: created, UpdatedAt: created, Revision: 1,
		secretHash: h,
	}
	return e
}

// decodeSeed checks one element (at file offset at) with the request
// bodies' rules and decodes it into sk (zero): the common shape without
// reflection (parseSeedKey, which accepts only what both pass), any
// other with strictjson's scan and encoding/json, unknown fields refused.
// A fault is located in the file.
func decodeSeed(sc *strictjson.Scanner, elem []byte, at int64, idx int, sk *seedKey) *seedFault {
	if parseSeedKey(elem, sk) {
		return nil // what strictjson and encoding/json accept alike
	}
	*sk = seedKey{}
	f := sc.Scan(elem, strictjson.Rules{})
	switch f.Kind {
	case strictjson.FaultNone:
		return elementDecodeFault(elem, at, idx, sk)
	case strictjson.FaultSyntax:
		if fault := elementDecodeFault(elem, at, idx, &seedKey{}); fault != nil {
			return fault
		}
		// The scan and the decoder disagree on what is JSON: refuse,
		// rather than load a key the scan did not check.
		return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d]", idx), Reason: "invalid JSON"}, off: -1}
	case strictjson.FaultDuplicate:
		return &seedFault{err: &DataError{Field: elemPath(idx, f.Path), Reason: "appears more than once"}, off: -1}
	case strictjson.FaultDepth:
		return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d]", idx), Reason: fmt.Sprintf("nests deeper than %d levels", strictjson.MaxDepth)}, off: -1}
	case strictjson.FaultMembers:
		return &seedFault{err: &DataError{Field: elemPath(idx, f.Path), Reason: fmt.Sprintf("more than %d members", strictjson.MaxMembers)}, off: -1}
	default: // strictjson.FaultText
		reason := "must be UTF-8 text without NUL characters"
		if f.Name {
			reason = "has a member name that " + reason
		}
		return &seedFault{err: &DataError{Field: elemPath(idx, f.Path), Reason: reason}, off: -1}
	}
}

// elemPath is the field path of a fault inside element idx.
func elemPath(idx int, path string) string {
	if path == "" {
		return fmt.Sprintf("[%d]", idx)
	}
	return fmt.Sprintf("[%d].%s", idx, path)
}

// elementDecodeFault decodes elem into sk with encoding/json, as one JSON
// value with unknown fields refused, and turns its error (nil if none)
// into a fault located in the file, the JSON path prefixed with the
// element's index.
func elementDecodeFault(elem []byte, at int64, idx int, sk *seedKey) *seedFault {
	dec := json.NewDecoder(bytes.NewReader(elem))
	dec.DisallowUnknownFields()
	err := dec.Decode(sk)
	if err == nil {
		rest := bytes.TrimLeft(elem[dec.InputOffset():], " \t\r\n")
		if len(rest) == 0 {
			return nil
		}
		off := int64(len(elem) - len(rest))
		return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d]", idx), Reason: "invalid JSON", Err: fmt.Errorf("invalid character %q after array element", rest[0])}, off: at + off + 1}
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d]", idx), Reason: "invalid JSON", Err: err}, off: at + syn.Offset}
	case errors.As(err, &typ):
		return &seedFault{err: &DataError{Field: elemPath(idx, typ.Field), Reason: fmt.Sprintf("wrong type (%s, want %s)", typ.Value, typ.Type)}, off: at + typ.Offset, inReason: true}
	default:
		de := jsonDataError("", elem, err)
		if de.Reason == "unknown field" {
			de.Field = elemPath(idx, de.Field)
		} else {
			de.Field = fmt.Sprintf("[%d]", idx)
		}
		return &seedFault{err: de, off: -1}
	}
}

// split reads the top-level array of keys.json and sends its elements in
// batches. It checks only the array's own structure (brackets, commas,
// strings, nesting depth); each element's JSON is the workers' to check.
// A file that is not an array is read whole and decoded as before the
// streaming: null seeds nothing, anything else is a wrong type.
func (l *seedLoader) split(ctx context.Context, r io.Reader, out chan<- *seedBatch) {
	s := &splitter{ctx: ctx, path: l.path, pool: &l.batches, out: out, buf: make([]byte, seedReadBuffer)}
	s.batch = s.newBatch()
	s.run(r)
}

type splitState uint8

const (
	splitBefore splitState = iota // before the top-level value
	splitFirst                    // after '[': an element or ']'
	splitNext                     // after ',': an element
	splitElem                     // in an element
	splitAfter                    // after the array: white space only
)

type splitter struct {
	ctx   context.Context
	path  string
	pool  *sync.Pool
	out   chan<- *seedBatch
	buf   []byte
	batch *seedBatch
	seq   int
	index int // array index of the element being read

	state    splitState
	depth    int                       // nesting inside the element
	open     [strictjson.MaxDepth]byte // the closing bracket of each level open
	inString bool                      // in a string of the element
	escaped  bool                      // after a backslash in a string
	elem     []byte
	elemAt   int64
}

func (s *splitter) newBatch() *seedBatch {
	b, ok := s.pool.Get().(*seedBatch)
	if !ok {
		b = &seedBatch{buf: make([]byte, 0, seedBatchBytes+seedBatchBytes/4),
			start: make([]int, 0, seedBatchKeys), end: make([]int, 0, seedBatchKeys), at: make([]int64, 0, seedBatchKeys)}
	}
	b.reset(s.seq, s.index)
	s.seq++
	return b
}

// flush sends the batch; false when the load was cancelled.
func (s *splitter) flush() bool {
	select {
	case s.out <- s.batch:
	case <-s.ctx.Done():
		return false
	}
	s.batch = s.newBatch()
	return true
}

// fail ends the split with a fault of the array after the elements read.
func (s *splitter) fail(f *seedFault) {
	s.batch.tail = f
	s.flush()
}

// syntaxFault is a misplaced character c at file offset off, located as
// encoding/json locates it (just after it).
func (s *splitter) syntaxFault(c byte, off int64) *seedFault {
	field, why := "", "invalid character %q looking for beginning of value"
	switch {
	case s.state == splitElem && s.depth > 0:
		field, why = fmt.Sprintf("[%d]", s.index), "invalid character %q: another bracket is open"
	case s.state == splitElem:
		field, why = fmt.Sprintf("[%d]", s.index), "invalid character %q after array element"
	}
	return &seedFault{err: &DataError{Field: field, Reason: "invalid JSON", Err: fmt.Errorf(why, c)}, off: off + 1}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *splitter) run(r io.Reader) {
	var base int64 // file offset of s.buf[0]
	for {
		n, rerr := io.ReadFull(r, s.buf)
		chunk := s.buf[:n]
		if s.state == splitBefore {
			i := 0
			for i < n && isSpace(chunk[i]) {
				i++
			}
			if i < n {
				if chunk[i] != '[' {
					s.notArray()
					return
				}
				s.state = splitFirst
				chunk, base = chunk[i+1:], base+int64(i+1)
			}
		}
		if s.state != splitBefore {
			if f := s.scan(chunk, base); f != nil {
				s.fail(f)
				return
			}
		}
		base += int64(len(chunk))
		switch {
		case rerr == nil:
			continue
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			if s.state != splitAfter {
				s.fail(&seedFault{err: &DataError{Reason: "truncated or empty JSON", Err: io.ErrUnexpectedEOF}, off: -1})
				return
			}
			if len(s.batch.start) > 0 {
				s.flush()
			}
			return
		default:
			s.fail(&seedFault{err: &DataError{Reason: "cannot read", Err: rerr}, off: -1})
			return
		}
	}
}

// scan goes through one chunk of the array (after its '[').
func (s *splitter) scan(b []byte, base int64) *seedFault {
	i, n := 0, len(b)
	start := 0 // where the current element's bytes begin in b
	for i < n {
		switch s.state {
		case splitFirst, splitNext:
			for i < n && isSpace(b[i]) {
				i++
			}
			if i == n {
				return nil
			}
			if b[i] == ']' && s.state == splitFirst {
				s.state = splitAfter
				i++
				continue
			}
			if b[i] == ']' || b[i] == ',' {
				return s.syntaxFault(b[i], base+int64(i))
			}
			s.state, s.depth, s.inString, s.escaped = splitElem, 0, false, false
			s.elem, s.elemAt, start = s.elem[:0], base+int64(i), i
		case splitElem:
			if s.inString {
				if s.escaped {
					s.escaped = false
					i++
					continue
				}
				q := bytes.IndexByte(b[i:], '"')
				if q < 0 {
					q = n - i
				}
				if bs := bytes.IndexByte(b[i:i+q], '\\'); bs >= 0 {
					i += bs + 1
					s.escaped = true
					continue
				}
				i += q
				if i < n {
					s.inString = false
					i++
				}
				continue
			}
			c := b[i]
			switch c {
			case '"':
				s.inString = true
			case '{', '[':
				if s.depth+2 > strictjson.MaxDepth { // the array is a level too
					return &seedFault{err: &DataError{Field: fmt.Sprintf("[%d]", s.index), Reason: fmt.Sprintf("nests deeper than %d levels", strictjson.MaxDepth)}, off: -1}
				}
				s.open[s.depth] = c + 2 // '{'+2 is '}', '['+2 is ']'
				s.depth++
			case '}', ']':
				switch {
				case s.depth > 0 && s.open[s.depth-1] == c:
					s.depth--
				case s.depth > 0 || c == '}':
					return s.syntaxFault(b[i], base+int64(i))
				default:
					if f := s.endElem(b[start:i]); f != nil {
						return f
					}
					s.state = splitAfter
				}
			case ',':
				if s.depth == 0 {
					if f := s.endElem(b[start:i]); f != nil {
						return f
					}
					s.state = splitNext
				}
			}
			i++
		case splitAfter:
			for i < n && isSpace(b[i]) {
				i++
			}
			if i < n {
				return &seedFault{err: &DataError{Reason: "trailing data after the JSON value"}, off: -1}
			}
		}
	}
	if s.state == splitElem {
		s.elem = append(s.elem, b[start:]...)
	}
	return nil
}

// endElem completes the element whose last bytes in this chunk are tail.
func (s *splitter) endElem(tail []byte) *seedFault {
	elem := tail
	if len(s.elem) > 0 {
		s.elem = append(s.elem, tail...)
		elem = s.elem
	}
	elem = bytes.TrimRight(elem, " \t\r\n")
	s.batch.add(elem, s.elemAt)
	s.index++
	if len(s.batch.start) >= seedBatchKeys || len(s.batch.buf) >= seedBatchBytes {
		if !s.flush() {
			return &seedFault{err: &DataError{Reason: "seeding stopped", Err: s.ctx.Err()}, off: -1}
		}
	}
	return nil
}

// notArray decodes a top-level value that is not an array, read whole,
// as DecodeStrict does: null seeds nothing; anything else is a wrong type
// or not JSON.
func (s *splitter) notArray() {
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.fail(&seedFault{err: &DataError{Reason: "cannot read", Err: err}, off: -1})
		return
	}
	var seeds []seedKey
	if err := DecodeStrict("", data, &seeds); err != nil {
		de := &DataError{Reason: "invalid JSON", Err: err}
		errors.As(err, &de)
		s.fail(&seedFault{err: de, off: -1})
		return
	}
	if len(seeds) > 0 {
		// Not reached: only an array decodes to elements, and the file
		// did not start with one when it was read above.
		s.fail(&seedFault{err: &DataError{Reason: "the file changed while it was read"}, off: -1})
	}
}
