package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCLIReferenceListsEveryServeFlag checks docs/cli.md against the binary: every flag `keygate
// serve -h` prints is in the table under the docs' heading of its group (the group's title as
// the help prints it), and every command of `keygate help` has a section of its own.
func TestCLIReferenceListsEveryServeFlag(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(build.Root, "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)

	help, err := exec.Command(build.Binary, "serve", "-h").Output()
	if err != nil {
		t.Fatalf("keygate serve -h: %v", err)
	}
	groups := helpGroups(string(help))
	if len(groups) < 5 {
		t.Fatalf("keygate serve -h: %d flag groups found, want the grouped help:\n%s", len(groups), help)
	}
	for _, g := range groups {
		section, ok := docSection(doc, "### "+g.title)
		if !ok {
			t.Errorf("docs/cli.md has no section \"### %s\" (a flag group of keygate serve -h)", g.title)
			continue
		}
		for _, f := range g.flags {
			if !strings.Contains(section, "| `--"+f+"` |") {
				t.Errorf("docs/cli.md, section %q: no row for --%s", g.title, f)
			}
		}
	}

	top, err := exec.Command(build.Binary, "help").Output()
	if err != nil {
		t.Fatalf("keygate help: %v", err)
	}
	cmds := regexp.MustCompile(`(?m)^  keygate ([a-z]+(?: [a-z][a-z-]+)?)`).FindAllStringSubmatch(string(top), -1)
	if len(cmds) == 0 {
		t.Fatalf("keygate help lists no command:\n%s", top)
	}
	for _, m := range cmds {
		name := m[1] // "serve", "keys import-legacy"
		if name == "help" {
			continue // the command table says it; it has no flags of its own
		}
		if !strings.Contains(doc, "\n## keygate "+name+"\n") {
			t.Errorf("docs/cli.md has no section \"## keygate %s\"", name)
		}
	}
}

// flagGroup is one heading of `serve -h` and the flags under it.
type flagGroup struct {
	title string
	flags []string
}

// helpGroups parses the grouped flags of a command's help: a line "Title:" at the start, then
// lines "  -name …".
func helpGroups(help string) []flagGroup {
	var out []flagGroup
	for _, l := range strings.Split(help, "\n") {
		switch {
		case strings.HasSuffix(l, ":") && l != "" && l[0] != ' ' && !strings.HasPrefix(l, "Usage") && l != "Examples:":
			out = append(out, flagGroup{title: strings.TrimSuffix(l, ":")})
		case strings.HasPrefix(l, "  -") && len(out) > 0:
			name := strings.Fields(l)[0][1:]
			out[len(out)-1].flags = append(out[len(out)-1].flags, name)
		}
	}
	return out
}

// docSection returns the text under heading up to the next heading of any level.
func docSection(doc, heading string) (string, bool) {
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		return "", false
	}
	rest := doc[i+len(heading)+2:]
	if j := strings.Index(rest, "\n#"); j >= 0 {
		rest = rest[:j]
	}
	return rest, true
}
