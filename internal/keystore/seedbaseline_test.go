package keystore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// loadSeedKeysBaseline is LoadSeedKeys as it was before it streamed: the
// whole file read, decoded into a slice of seed keys, then each key
// checked in turn with one AuthorizeKeys each. The seeding benchmarks
// measure against it in the same run.
func loadSeedKeysBaseline(ctx context.Context, dir string, d *Directory, now time.Time, authz Authorizer) ([]*Key, error) {
	path := filepath.Join(dir, keysFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &DataError{File: path, Reason: "cannot read", Err: err}
	}
	var seeds []seedKey
	if err := DecodeStrict(path, data, &seeds); err != nil {
		return nil, err
	}
	plans := d.plans()
	ids := make(map[string]bool, len(seeds))
	hashes := make(map[[32]byte]string, len(seeds))
	keys := make([]*Key, 0, len(seeds))
	for i := range seeds {
		sk := &seeds[i]
		f := func(name string) string { return fmt.Sprintf("[%d].%s", i, name) }
		switch {
		case !idPattern.MatchString(sk.ID):
			return nil, &DataError{File: path, Field: f("id"), Reason: fmt.Sprintf("%q is not a valid id", sk.ID)}
		case ids[sk.ID]:
			return nil, &DataError{File: path, Field: f("id"), Reason: fmt.Sprintf("duplicate key id %q", sk.ID)}
		case !known(plans, sk.Service):
			return nil, &DataError{File: path, Field: f("service"), Reason: fmt.Sprintf("unknown service %q", sk.Service)}
		}
		spec := KeySpec{Name: sk.Name, ContentAPI: sk.ContentAPI, ManagementAPI: sk.ManagementAPI}
		if field, reason, ok := checkSpec(&spec); !ok {
			return nil, &DataError{File: path, Field: f(field), Reason: reason}
		}
		dec, err := authz.AuthorizeKeys(ctx, KeyRequest{Action: ActionCreate,
			Service: ServiceInput{ID: sk.Service, Plan: plans[sk.Service]}, Key: &spec})
		if err != nil {
			return nil, &DataError{File: path, Field: f("contentApi"), Reason: "the keys policy could not check it", Err: err}
		}
		if len(dec.Violations) > 0 {
			v := dec.Violations[0]
			where := "contentApi.default"
			if v.Endpoint != "default" {
				where = "contentApi.individual." + v.Endpoint
			}
			return nil, &DataError{File: path, Field: f(where + "." + v.Flag), Reason: v.Message}
		}
		h, err := parseHashOrPlain(sk.Secret)
		if err != nil {
			return nil, &DataError{File: path, Field: f("secret"), Reason: err.Error()}
		}
		if other, dup := hashes[h]; dup {
			return nil, &DataError{File: path, Field: f("secret"), Reason: fmt.Sprintf("same secret as key %q", other)}
		}
		ids[sk.ID] = true
		hashes[h] = sk.ID
		created := sk.CreatedAt.UTC()
		if sk.CreatedAt.IsZero() {
			created = now
		}
		createdBy := sk.CreatedBy
		if createdBy == "" {
			createdBy = "seed"
		}
		keys = append(keys, &Key{
			ID: sk.ID, Service: sk.Service, Name: sk.Name,
			ContentAPI: sk.ContentAPI.Clone(), ManagementAPI: sk.ManagementAPI,
			CreatedBy: createdBy, CreatedAt: created, UpdatedAt: created, Revision: 1,
			secretHash: h,
		})
	}
	return keys, nil
}
