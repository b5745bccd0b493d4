package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/keygate/keygate/internal/strictjson"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
)

// maxLogLine bounds one decision-log line: a decision carries at most an
// 8 KiB path and 8 KiB of query, so 1 MiB is far beyond any line keygate
// writes.
const maxLogLine = 1 << 20

// examplesPerGroup is how many decision ids each group of changes shows.
const examplesPerGroup = 3

// replayCmd re-evaluates a decision log against a candidate policy and
// reports what would change. Exit 0: nothing changes; 1: something does;
// 2: an error (bad flags, an unreadable log or state, a candidate that does
// not compile, lines that cannot be replayed).
func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", `Usage: keygate replay --log FILE --policies DIR [--state FILE | --store URL] [--data DIR] [--format text|json]

Re-evaluates every decision in a decision log (as keygate serve
--decision-log writes it) against the candidate policy in DIR, with keys and
services as they are now in the key state (or, with --store, in the
PostgreSQL database the replicas share, read in one read-only snapshot:
nothing is migrated, seeded or written), and prints the decisions that
would change — in allow, status, code or message, or, for a decision
judged by the old key headers (--legacy-headers), in the header whose key
is chosen — grouped by (from → to, status, code, message, service,
endpoint, permission) with example decision ids. Each question is asked as
it was asked, old headers included. Decisions whose key has been deleted
since, and answers a stale key store gave without asking the policy, are
reported, not replayed. A line is validated as /v1/decide validates a
request: one it would refuse cannot be replayed. Text output escapes what
is not printable. The log is streamed: any size works.

Exit status: 0 when no decision changes, 1 when some do (a CI gate), 2 on
error.`, stderr)
	logPath := fs.String("log", "", `decision log (JSON lines); "-" for stdin`)
	policies := fs.String("policies", "policies", "directory of the candidate policy")
	state := fs.String("state", ".keygate/state.json", "key state as keygate serve keeps it (read, never written: a copy is opened)")
	store := fs.String("store", "", "PostgreSQL connection string of a shared key store (postgres://…), read-only; replaces --state (KEYGATE_STORE)")
	data := fs.String("data", "data", "directory of services.json and members.json (and seed keys.json when there is no state)")
	format := fs.String("format", "text", "text or json")
	timeout := fs.Duration("eval-timeout", 10*time.Second, "bound on one evaluation (an evaluation that exceeds it counts as a 503 deny: a change)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	if err := checkArgs(fs, args, "log"); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usagef(fs, "invalid value %q for flag -format: want text or json", *format)
	}
	stateSet := false
	fs.Visit(func(f *flag.Flag) { stateSet = stateSet || f.Name == "state" })
	if *store != "" && stateSet {
		return usagef(fs, "--state and --store (KEYGATE_STORE) name two key stores; give one")
	}
	rep, err := runReplay(ctx, *logPath, *policies, keySource{state: *state, store: *store, data: *data}, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "keygate replay: %v\n", err)
		return exitError{2}
	}
	fmt.Fprintf(stderr, "keygate replay: %d decisions in %s (%.0f decisions/s)\n",
		rep.Decisions, rep.took.Round(time.Millisecond), float64(rep.Decisions)/max(rep.took.Seconds(), 1e-9))
	if *format == "json" {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		if _, err := stdout.Write(escapeC1(buf.Bytes())); err != nil {
			return err
		}
	} else {
		rep.writeText(stdout)
	}
	switch {
	case rep.Unreplayable.Decisions > 0:
		return exitError{2}
	case rep.Changed > 0:
		return exitError{1}
	}
	return nil
}

// outcome is one side of a change: what the client is told (and, for a
// decision judged by the old key headers, the header whose key was
// chosen).
type outcome struct {
	Allow     bool   `json:"allow"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	KeyHeader string `json:"keyHeader,omitempty"`
}

func (o outcome) verdict() string {
	if o.Allow {
		return "allow"
	}
	return "deny"
}

// groupKey is what the changes are grouped by.
type groupKey struct {
	from, to                      outcome
	service, endpoint, permission string
}

// changeGroup is one group of decisions that change the same way.
type changeGroup struct {
	From       outcome  `json:"from"`
	To         outcome  `json:"to"`
	Service    string   `json:"service"`
	Endpoint   string   `json:"endpoint"`
	Permission string   `json:"permission"`
	Count      int      `json:"count"`
	KeyChanged int      `json:"keyChangedSince"`
	Examples   []string `json:"examples"`
}

// idSample is a count with a few example decision ids.
type idSample struct {
	Decisions int      `json:"decisions"`
	Examples  []string `json:"examples,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	Reasons   []string `json:"reasons,omitempty"`
}

func (s *idSample) add(id string) {
	s.Decisions++
	if len(s.Examples) < examplesPerGroup {
		s.Examples = append(s.Examples, id)
	}
}

// replayReport is the result of a replay.
type replayReport struct {
	CandidateRevision string   `json:"candidateRevision"`
	Decisions         int      `json:"decisions"`
	Replayed          int      `json:"replayed"`
	Changed           int      `json:"changed"`
	Unchanged         int      `json:"unchanged"`
	Errors            int      `json:"candidateErrors"`
	DeletedKeys       idSample `json:"deletedKeys"`
	// NotAsked counts the logged answers given without asking the policy
	// (a stale key store's 503): not replayed.
	NotAsked idSample `json:"notAsked"`
	// Truncated counts the lines whose fields the log cut to 1 KiB: the
	// question is not known exactly, so they are not replayed.
	Truncated    idSample `json:"truncated"`
	Unreplayable idSample `json:"unreplayable"`
	ShadowLines  int      `json:"shadowLinesSkipped"`
	// Evaluated is how many distinct questions the candidate evaluated
	// (repeated questions are answered once).
	Evaluated int           `json:"evaluated"`
	Groups    []changeGroup `json:"groups"`

	took time.Duration
}

// keySource is where replay reads keys and services: a PostgreSQL store
// when set, else the local state (and data).
type keySource struct {
	state, store, data string
}

func runReplay(ctx context.Context, logPath, policies string, src keySource, timeout time.Duration) (*replayReport, error) {
	// Replay allocates short-lived garbage per decision and keeps little:
	// a lazier collector buys throughput for a bounded heap.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.New(ctx, policies, engine.Options{Timeout: timeout, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("candidate: %w", err)
	}
	var store *keystore.Store
	var cleanup func()
	if src.store != "" {
		store, cleanup, err = openStoreReadOnly(ctx, src.store, src.data, eng, log)
	} else {
		store, cleanup, err = openStateCopy(ctx, src.data, src.state, eng, log)
	}
	if err != nil {
		return nil, err
	}
	defer cleanup()

	var in io.Reader = os.Stdin
	if logPath != "-" {
		f, err := os.Open(logPath)
		if err != nil {
			return nil, fmt.Errorf("decision log: %w", err)
		}
		defer f.Close()
		in = f
	}
	rp := decision.NewReplayer(eng, store)
	rep := &replayReport{CandidateRevision: eng.Revision(), Groups: []changeGroup{}}
	groups := map[groupKey]*changeGroup{}
	deletedKeys := map[string]bool{}
	reasons := map[string]bool{}

	start := time.Now()
	sc := bufio.NewScanner(bufio.NewReaderSize(in, 256<<10))
	sc.Buffer(make([]byte, 0, 64<<10), maxLogLine)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var e decision.LoggedDecision
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("decision log line %d: %w", line, err)
		}
		if e.Shadow != nil {
			rep.ShadowLines++
			continue
		}
		rep.Decisions++
		// A line is read as /v1/decide reads a body: a string that is not
		// text (a lone surrogate escape, which encoding/json would turn
		// into U+FFFD) was never written by keygate nor asked of it. A NUL
		// is text here: a path's %00 is logged as one.
		o, err := decision.ReplayOutcome{}, error(nil)
		if f := strictjson.Scan(b, strictjson.Rules{ExactIn: "query", AllowNUL: true}); f.Kind == strictjson.FaultText {
			err = fmt.Errorf("%w: %s", decision.ErrNotReplayable, strictjson.TextFaultDetail(f))
		} else {
			o, err = rp.Replay(ctx, &e)
		}
		switch {
		case err != nil:
			rep.Unreplayable.add(e.DecisionID)
			if r := err.Error(); !reasons[r] && len(reasons) < 10 {
				reasons[r] = true
				rep.Unreplayable.Reasons = append(rep.Unreplayable.Reasons, r)
			}
			continue
		case o.NotAsked:
			rep.NotAsked.add(e.DecisionID)
			continue
		case o.Truncated:
			rep.Truncated.add(e.DecisionID)
			continue
		case o.KeyDeleted:
			rep.DeletedKeys.add(e.DecisionID)
			if !deletedKeys[o.DeletedKeyID] {
				deletedKeys[o.DeletedKeyID] = true
				rep.DeletedKeys.Keys = append(rep.DeletedKeys.Keys, o.DeletedKeyID)
			}
			continue
		}
		rep.Replayed++
		if o.Err != nil {
			rep.Errors++
		}
		if !o.Changed {
			rep.Unchanged++
			continue
		}
		rep.Changed++
		d := &o.Decision
		from := outcome{Allow: e.Allow, Status: e.Status, Code: e.Code, Message: d.Message}
		if e.Message != nil {
			from.Message = *e.Message // a line without one: its message is not compared
		}
		to := outcome{Allow: d.Allow, Status: d.Status, Code: d.Code, Message: d.Message}
		if e.Legacy != nil {
			from.KeyHeader, to.KeyHeader = e.Legacy.KeyHeader, o.KeyHeader
		}
		k := groupKey{
			from: from, to: to,
			service: e.Service, endpoint: cmp.Or(d.Endpoint, e.Endpoint), permission: cmp.Or(d.Permission, e.Permission),
		}
		g := groups[k]
		if g == nil {
			g = &changeGroup{From: k.from, To: k.to, Service: k.service, Endpoint: k.endpoint, Permission: k.permission}
			groups[k] = g
		}
		g.Count++
		if o.KeyChanged {
			g.KeyChanged++
		}
		if len(g.Examples) < examplesPerGroup {
			g.Examples = append(g.Examples, e.DecisionID)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("decision log after line %d: %w", line, err)
	}
	rep.took = time.Since(start)
	rep.Evaluated = rep.Replayed - rp.Hits
	for _, g := range groups {
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(a, b changeGroup) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Service, b.Service), strings.Compare(a.Endpoint, b.Endpoint),
			strings.Compare(a.Permission, b.Permission), strings.Compare(a.To.Code, b.To.Code), strings.Compare(a.From.Code, b.From.Code),
			strings.Compare(a.To.Message, b.To.Message), strings.Compare(a.From.Message, b.From.Message),
			strings.Compare(a.To.KeyHeader, b.To.KeyHeader), strings.Compare(a.From.KeyHeader, b.From.KeyHeader))
	})
	slices.Sort(rep.DeletedKeys.Keys)
	return rep, nil
}

// openStateCopy opens the key state read-only: it copies the snapshot and
// its log to a temporary directory and opens the copy (Open takes the
// state's lock and compacts it, which a running server's state must not
// suffer). Without a state, keys are seeded from dataDir as serve would.
func openStateCopy(ctx context.Context, dataDir, statePath string, eng *engine.Engine, log *slog.Logger) (*keystore.Store, func(), error) {
	tmp, err := os.MkdirTemp("", "keygate-replay-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	copyPath := filepath.Join(tmp, "state.json")
	for _, suffix := range []string{"", ".log"} {
		b, err := os.ReadFile(statePath + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			err = os.WriteFile(copyPath+suffix, b, 0o600)
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("key state: %w", err)
		}
	}
	store, err := keystore.New(ctx, local.New(local.Options{StatePath: copyPath}), keystore.Options{
		DataDir: dataDir, Authorizer: authz.New(eng), Logger: log,
	})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return store, func() { _ = store.Close(); cleanup() }, nil
}

// openStoreReadOnly opens a PostgreSQL key store read-only: one snapshot,
// no migration, no seeding, no writes; a database without keygate's schema
// is refused.
func openStoreReadOnly(ctx context.Context, url, dataDir string, eng *engine.Engine, log *slog.Logger) (*keystore.Store, func(), error) {
	store, err := keystore.New(ctx, postgres.New(url, postgres.Options{ReadOnly: true}), keystore.Options{
		DataDir: dataDir, Authorizer: authz.New(eng), Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("key store: %w", err)
	}
	return store, func() { _ = store.Close() }, nil
}

// writeText writes the report for a terminal. Everything that comes from
// the log or the candidate is escaped where it is not printable (ESC, OSC
// and other control or format characters), so a log line cannot drive the
// terminal; messages are always quoted.
func (r *replayReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "Candidate revision %s: %d decisions, %d replayed, %d change, %d unchanged.\n",
		printable(r.CandidateRevision), r.Decisions, r.Replayed, r.Changed, r.Unchanged)
	if r.Errors > 0 {
		fmt.Fprintf(w, "The candidate failed to evaluate %d decisions (answered as a 503 deny).\n", r.Errors)
	}
	if n := r.DeletedKeys.Decisions; n > 0 {
		fmt.Fprintf(w, "%d decisions were made with keys deleted since (%s): not replayed; examples %s.\n",
			n, printableList(r.DeletedKeys.Keys, ", "), printableList(r.DeletedKeys.Examples, " "))
	}
	if n := r.NotAsked.Decisions; n > 0 {
		fmt.Fprintf(w, "%d decisions were answered without asking the policy (a stale key store): not replayed; examples %s.\n",
			n, printableList(r.NotAsked.Examples, " "))
	}
	if n := r.Truncated.Decisions; n > 0 {
		fmt.Fprintf(w, "%d decisions were logged with fields cut to 1 KiB (the question is not known exactly): not replayed; examples %s.\n",
			n, printableList(r.Truncated.Examples, " "))
	}
	if n := r.Unreplayable.Decisions; n > 0 {
		fmt.Fprintf(w, "%d decisions cannot be replayed (%s); examples %s.\n",
			n, printableList(r.Unreplayable.Reasons, "; "), printableList(r.Unreplayable.Examples, " "))
	}
	if r.ShadowLines > 0 {
		fmt.Fprintf(w, "%d shadow-disagreement lines skipped.\n", r.ShadowLines)
	}
	if len(r.Groups) == 0 {
		fmt.Fprintln(w, "No decision changes.")
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tCHANGE\tSTATUS\tCODE\tMESSAGE\tSERVICE\tENDPOINT\tPERMISSION\tKEY CHANGED\tEXAMPLES")
	for _, g := range r.Groups {
		change := g.From.verdict() + "→" + g.To.verdict()
		if g.From.KeyHeader != g.To.KeyHeader {
			change += " (key of " + dash(printable(g.From.KeyHeader)) + "→" + dash(printable(g.To.KeyHeader)) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d→%d\t%s→%s\t%s→%s\t%s\t%s\t%s\t%s\t%s\n", g.Count, change,
			g.From.Status, g.To.Status, printable(g.From.Code), printable(g.To.Code),
			strconv.Quote(g.From.Message), strconv.Quote(g.To.Message),
			dash(printable(g.Service)), dash(printable(g.Endpoint)), dash(printable(g.Permission)),
			strconv.Itoa(g.KeyChanged), printableList(g.Examples, " "))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable returns s as it is when every character of it is printable
// and not a tab (tabwriter's separator), else s quoted as a Go string
// (strconv.Quote), which escapes the rest.
func printable(s string) string {
	for _, r := range s {
		if r == '\t' || !strconv.IsPrint(r) || r == utf8.RuneError {
			return strconv.Quote(s)
		}
	}
	return s
}

// escapeC1 escapes the C1 control characters (U+0080–U+009F, which
// encoding/json leaves as they are) in a JSON document as \u00XX: a
// terminal that shows the report must not act on one from the log.
func escapeC1(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r >= 0x80 && r <= 0x9f {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out
}

func printableList(l []string, sep string) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = printable(s)
	}
	return strings.Join(out, sep)
}
