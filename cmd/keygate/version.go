package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	opaversion "github.com/open-policy-agent/opa/v1/version"
)

// opaModule is the module path of the Open Policy Agent keygate embeds.
const opaModule = "github.com/open-policy-agent/opa"

// versionCmd prints keygate's version and commit, and the versions of OPA
// and Go it was built with, from the binary's build information.
func versionCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("version", `Usage: keygate version

Prints keygate's version (the main module's, as go build stamps it), the
commit it was built from (and whether the work tree had changes), the
version of the Open Policy Agent it embeds and the Go version.`, io.Discard)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	_, err := io.WriteString(stdout, readVersion(bi).String())
	return err
}

// buildVersion is what `keygate version` prints.
type buildVersion struct {
	Version    string // the main module's version, "(devel)" when unknown
	Commit     string // vcs.revision, "" when not built from a checkout
	Modified   bool   // vcs.modified: the work tree had uncommitted changes
	CommitTime string // vcs.time
	OPA        string
	Go         string
	Platform   string
}

// readVersion reads bi (nil when the binary carries no build information).
// OPA's version is the dependency's in bi, else OPA's own version package.
func readVersion(bi *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: "(devel)", OPA: "v" + strings.TrimPrefix(opaversion.Version, "v"),
		Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path != opaModule {
			continue
		}
		if d.Replace != nil && d.Replace.Version != "" {
			d = d.Replace
		}
		if d.Version != "" {
			v.OPA = d.Version
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.CommitTime = s.Value
		}
	}
	return v
}

func (v buildVersion) String() string {
	commit := "unknown (built without version control information)"
	if v.Commit != "" {
		commit = v.Commit
		if v.Modified {
			commit += " (modified)"
		}
		if v.CommitTime != "" {
			commit += ", committed " + v.CommitTime
		}
	}
	return fmt.Sprintf("keygate %s\ncommit  %s\nOPA     %s\nGo      %s %s\n", v.Version, commit, v.OPA, v.Go, v.Platform)
}
