package docs

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// block is one fenced ```sh block of a Markdown file.
type block struct {
	file  string
	line  int // of the opening fence, 1-based
	run   bool
	serve []string // keygate serve flags
	needs []string
	// noServe starts no keygate; fresh starts a new one even when the previous block's would do.
	noServe, fresh bool
	text           string
}

// where names the block for messages.
func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// session is what a block runs against; consecutive blocks of one file with equal sessions share
// a keygate and a working directory.
func (b block) session() string {
	return fmt.Sprintf("%s|%v|%v|%v", b.file, b.serve, b.needs, b.noServe)
}

// parseBlocks returns the ```sh blocks of a Markdown document.
func parseBlocks(file, doc string) ([]block, error) {
	var out []block
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		fence, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "```")
		if !ok || fence == "" {
			continue
		}
		words := strings.Fields(fence)
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		var body []string
		j := i + 1
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			l := lines[j]
			if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
				l = l[indent:]
			}
			body = append(body, l)
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s:%d: unclosed fence", file, i+1)
		}
		if words[0] == "sh" {
			b := block{file: file, line: i + 1, run: true, text: strings.Join(body, "\n") + "\n"}
			for _, w := range words[1:] {
				switch {
				case w == "norun":
					b.run = false
				case w == "noserve":
					b.noServe = true
				case w == "fresh":
					b.fresh = true
				case strings.HasPrefix(w, "serve:"):
					b.serve = append(b.serve, strings.TrimPrefix(w, "serve:"))
				case strings.HasPrefix(w, "needs="):
					b.needs = append(b.needs, strings.Split(strings.TrimPrefix(w, "needs="), ",")...)
				default:
					return nil, fmt.Errorf("%s:%d: unknown word %q after ```sh (see tests/docs/doc.go)", file, i+1, w)
				}
			}
			for _, n := range b.needs {
				if !slices.Contains([]string{"nginx", "postgres", "openssl", "opa"}, n) {
					return nil, fmt.Errorf("%s:%d: unknown need %q", file, i+1, n)
				}
			}
			out = append(out, b)
		}
		i = j
	}
	return out, nil
}

// command is one shell command of a block and what it should print.
type command struct {
	line   int // within the block, 0-based
	text   string
	expect []string // "# -> " texts
}

const expectMark = "# -> "

// splitCommands cuts a block into commands: a command runs over continuation lines (a trailing
// backslash), lines inside an open quote and here-documents; comments and blank lines separate
// commands, and a "# -> " comment belongs to the command before it.
func splitCommands(text string) ([]command, error) {
	var out []command
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "#") {
			if e, ok := strings.CutPrefix(l, expectMark); ok {
				if len(out) == 0 {
					return nil, fmt.Errorf("line %d: %q before any command", i+1, l)
				}
				out[len(out)-1].expect = append(out[len(out)-1].expect, e)
			}
			continue
		}
		c := command{line: i}
		var cmd []string
		quote := byte(0)
		heredoc := ""
		for ; i < len(lines); i++ {
			line := lines[i]
			cmd = append(cmd, line)
			if heredoc != "" {
				if strings.TrimSpace(line) == heredoc {
					heredoc = ""
					break
				}
				continue
			}
			quote = scanQuotes(line, quote)
			if quote == 0 {
				if k := strings.Index(line, "<<"); k >= 0 && !strings.Contains(line, "<<<") {
					heredoc = strings.Trim(strings.Fields(line[k+2:])[0], `'"-`)
					continue
				}
			}
			if quote == 0 && !strings.HasSuffix(line, "\\") && !openLoop(cmd) {
				break
			}
		}
		if quote != 0 || heredoc != "" {
			return nil, fmt.Errorf("line %d: command never ends (open quote or here-document)", c.line+1)
		}
		last := cmd[len(cmd)-1]
		if k := strings.Index(last, "  "+expectMark); k >= 0 {
			c.expect = append(c.expect, strings.TrimSpace(last[k+len("  "+expectMark):]))
		}
		c.text = strings.Join(cmd, "\n")
		out = append(out, c)
	}
	return out, nil
}

// scanQuotes returns the quote still open at the end of line, given the one open at its start.
// A # outside quotes after a blank ends the scan (a comment).
func scanQuotes(line string, open byte) byte {
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case open == '\'':
			if ch == '\'' {
				open = 0
			}
		case open == '"':
			if ch == '\\' {
				i++
			} else if ch == '"' {
				open = 0
			}
		case ch == '\\':
			i++
		case ch == '\'' || ch == '"':
			open = ch
		case ch == '#' && (i == 0 || line[i-1] == ' '):
			return open
		}
	}
	return open
}

// openLoop reports whether the lines open a for/while/if that has not been closed yet.
func openLoop(lines []string) bool {
	depth := 0
	for _, l := range lines {
		if k := strings.Index(" "+l, " #"); k >= 0 {
			l = l[:k] // a comment ("# for CI") opens no loop
		}
		f := strings.Fields(l)
		for _, w := range f {
			switch strings.TrimSuffix(w, ";") {
			case "for", "while", "until", "if":
				depth++
			case "done", "fi":
				depth--
			}
		}
	}
	return depth > 0
}

func TestSplitCommands(t *testing.T) {
	for _, tc := range []struct {
		note string
		text string
		want []command
	}{
		{"one per line, trailing expectation", "a  # -> x\nb\n", []command{{0, "a  # -> x", []string{"x"}}, {1, "b", nil}}},
		{"continuation and the next line's expectation", "a \\\n  b\n# -> y … z\n", []command{{0, "a \\\n  b", []string{"y … z"}}}},
		{"multi-line quote", "curl -d '{\n\"a\":1}'\n", []command{{0, "curl -d '{\n\"a\":1}'", nil}}},
		{"here-document", "cat > f <<'JSON'\n{\"a\": 1}\nJSON\nnext\n", []command{{0, "cat > f <<'JSON'\n{\"a\": 1}\nJSON", nil}, {3, "next", nil}}},
		{"loop", "for r in a b; do\n  echo $r\ndone\n", []command{{0, "for r in a b; do\n  echo $r\ndone", nil}}},
		{"loop word in a comment is no loop", "a  # for CI\n# -> exit 1\n", []command{{0, "a  # for CI", []string{"exit 1"}}}},
		{"quote in a comment is no quote", "a # it's\nb\n", []command{{0, "a # it's", nil}, {1, "b", nil}}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got, err := splitCommands(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if _, err := splitCommands("echo 'open\n"); err == nil {
		t.Error("an unclosed quote was accepted")
	}
}

func TestParseBlocks(t *testing.T) {
	doc := "x\n```sh\na\n```\n```sh norun\nb\n```\n```json\n{}\n```\n```sh serve:--legacy-headers needs=nginx,postgres noserve fresh\nc\n```\n"
	got, err := parseBlocks("f.md", doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[0].run || got[1].run || got[0].line != 2 ||
		fmt.Sprint(got[2].serve, got[2].needs, got[2].noServe, got[2].fresh) != "[--legacy-headers] [nginx postgres] true true" {
		t.Errorf("%+v", got)
	}
	if _, err := parseBlocks("f.md", "```sh sometimes\n```\n"); err == nil {
		t.Error("an unknown word was accepted")
	}
}

// markdownFiles lists README.md and every .md file under docs/ of root.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	err := walkMarkdown(root, "docs", &files)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func walkMarkdown(root, dir string, files *[]string) error {
	entries, err := os.ReadDir(root + "/" + dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		name := dir + "/" + e.Name()
		switch {
		case e.IsDir():
			if err := walkMarkdown(root, name, files); err != nil {
				return err
			}
		case strings.HasSuffix(name, ".md"):
			*files = append(*files, name)
		}
	}
	return nil
}
