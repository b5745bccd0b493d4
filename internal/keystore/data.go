package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files under the data directory.
const (
	servicesFile = "services.json"
	membersFile  = "members.json"
	keysFile     = "keys.json"
)

// Directory is the services and members of a store, validated as a whole
// (data/, or a driver's storage).
type Directory struct {
	Services []*Service
	Members  []*Member
}

// known reports whether service id is in plans.
func known(plans map[string]string, id string) bool {
	_, ok := plans[id]
	return ok
}

// plans returns the plan of every service by id, built once per seeding
// so that finding a seed key's plan is a map lookup, not a scan of the
// service list per key.
func (d *Directory) plans() map[string]string {
	m := make(map[string]string, len(d.Services))
	for _, s := range d.Services {
		m[s.ID] = s.Plan
	}
	return m
}

type seedMember struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Role    string `json:"role"`
	Token   string `json:"token"`
}

type seedKey struct {
	ID            string          `json:"id"`
	Service       string          `json:"service"`
	Name          string          `json:"name"`
	Secret        string          `json:"secret"`
	ContentAPI    ContentAPI      `json:"contentApi"`
	ManagementAPI ManagementPerms `json:"managementApi"`
	CreatedBy     string          `json:"createdBy"`
	CreatedAt     time.Time       `json:"createdAt"`
}

// DecodeStrict decodes one JSON value from a file, refusing unknown fields
// and trailing data, and turns decoder errors into a DataError with the
// field (or line:column) at fault.
func DecodeStrict(path string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonDataError(path, data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DataError{File: path, Reason: "trailing data after the JSON value"}
	}
	return nil
}

func jsonDataError(path string, data []byte, err error) *DataError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &DataError{File: path, Field: lineCol(data, syn.Offset), Reason: "invalid JSON", Err: err}
	case errors.As(err, &typ):
		return &DataError{File: path, Field: typ.Field, Reason: fmt.Sprintf("%s: wrong type (%s, want %s)", lineCol(data, typ.Offset), typ.Value, typ.Type), Err: nil}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &DataError{File: path, Reason: "truncated or empty JSON", Err: err}
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return &DataError{File: path, Field: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Reason: "unknown field"}
	default:
		return &DataError{File: path, Reason: "invalid JSON", Err: err}
	}
}

func lineCol(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d col %d", line, col)
}

// LoadDirectory reads and validates services.json and members.json.
// A service's plan is checked for shape only (a lower-case token): which plans
// exist, and their limits, is policy data (policies/plans/data.json) that a
// security team edits without rebuilding keygate. The keys policy fails closed
// on a plan its data lacks: limit 0, so no key can be created.
// Members may carry any lower-case role: microCMS services define their own
// roles, and the policy only asks whether a role is "admin". Lower case is
// enforced so that "Admin" is a loud error rather than a silent non-admin.
func LoadDirectory(dir string) (*Directory, error) {
	spath := filepath.Join(dir, servicesFile)
	sdata, err := os.ReadFile(spath)
	if err != nil {
		return nil, &DataError{File: spath, Reason: "cannot read", Err: err}
	}
	var services []Service
	if err := DecodeStrict(spath, sdata, &services); err != nil {
		return nil, err
	}
	d := &Directory{}
	seen := make(map[string]bool, len(services))
	for i := range services {
		s := services[i]
		f := func(name string) string { return fmt.Sprintf("[%d].%s", i, name) }
		switch {
		case !serviceIDPattern.MatchString(s.ID):
			return nil, &DataError{File: spath, Field: f("id"), Reason: fmt.Sprintf("%q is not a service id (a lower-case DNS label)", s.ID)}
		case seen[s.ID]:
			return nil, &DataError{File: spath, Field: f("id"), Reason: fmt.Sprintf("duplicate service id %q", s.ID)}
		case !planPattern.MatchString(s.Plan):
			return nil, &DataError{File: spath, Field: f("plan"), Reason: fmt.Sprintf("%q is not a plan name (a lower-case token such as team; the plans themselves are in policies/plans/data.json)", s.Plan)}
		}
		if field, why, ok := checkServiceAPIs(s.APIs); !ok {
			return nil, &DataError{File: spath, Field: f(field), Reason: why}
		}
		seen[s.ID] = true
		d.Services = append(d.Services, &s)
	}

	mpath := filepath.Join(dir, membersFile)
	mdata, err := os.ReadFile(mpath)
	if err != nil {
		return nil, &DataError{File: mpath, Reason: "cannot read", Err: err}
	}
	var members []seedMember
	if err := DecodeStrict(mpath, mdata, &members); err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(members))
	tokens := make(map[[32]byte]string, len(members))
	for i, m := range members {
		f := func(name string) string { return fmt.Sprintf("[%d].%s", i, name) }
		switch {
		case !idPattern.MatchString(m.ID):
			return nil, &DataError{File: mpath, Field: f("id"), Reason: fmt.Sprintf("%q is not a valid id", m.ID)}
		case ids[m.ID]:
			return nil, &DataError{File: mpath, Field: f("id"), Reason: fmt.Sprintf("duplicate member id %q", m.ID)}
		case !seen[m.Service]:
			return nil, &DataError{File: mpath, Field: f("service"), Reason: fmt.Sprintf("unknown service %q", m.Service)}
		case !rolePattern.MatchString(m.Role):
			return nil, &DataError{File: mpath, Field: f("role"), Reason: fmt.Sprintf("%q is not a role (lower-case name such as admin or editor)", m.Role)}
		}
		h, err := parseHashOrPlain(m.Token)
		if err != nil {
			return nil, &DataError{File: mpath, Field: f("token"), Reason: err.Error()}
		}
		if other, dup := tokens[h]; dup {
			return nil, &DataError{File: mpath, Field: f("token"), Reason: fmt.Sprintf("same token as member %q", other)}
		}
		ids[m.ID] = true
		tokens[h] = m.ID
		d.Members = append(d.Members, &Member{ID: m.ID, Service: m.Service, Role: m.Role, tokenHash: h})
	}
	return d, nil
}

// checkServiceAPIs validates a service's optional list of content API
// endpoints with the rule of a key's individual permissions (an endpoint a
// key could name): at most maxIndividual names of 1-maxEndpointBytes of
// a-z 0-9 _ -, each once.
func checkServiceAPIs(apis []string) (field, reason string, ok bool) {
	if len(apis) > maxIndividual {
		return "apis", fmt.Sprintf("more than %d APIs", maxIndividual), false
	}
	seen := make(map[string]bool, len(apis))
	for i, api := range apis {
		switch {
		case len(api) > maxEndpointBytes || !endpointPattern.MatchString(api):
			return fmt.Sprintf("apis[%d]", i), fmt.Sprintf("%q is not an API endpoint name (1-%d characters of a-z 0-9 _ -)", api, maxEndpointBytes), false
		case seen[api]:
			return fmt.Sprintf("apis[%d]", i), fmt.Sprintf("duplicate API %q", api), false
		}
		seen[api] = true
	}
	return "", "", true
}
