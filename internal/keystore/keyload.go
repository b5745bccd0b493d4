package keystore

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// built is the whole key index of a Load, made outside memdb: pages,
// buckets and service records, ready to insert.
type built struct {
	pages    []*keyPage
	secrets  []*secretBucket
	ids      []*idBucket
	services []*svcKeys
}

// build lays keys out in pages and buckets in one pass (sorts, no per-key
// memdb insert). Of two keys with the same id the later one is kept (as
// an insert replaces); two keys sharing a secret hash fail it. Records,
// individual entries and bucket entries are carved out of one array each,
// and each page's ids and names are one array of bytes (its own, so that a
// string read from it keeps only that page's bytes alive): a Load makes a
// few large objects and two per page, not several per key, and none of
// them but the pages and buckets themselves holds a pointer.
func (ix *index) build(keys []*Key) (*built, error) {
	n := len(keys)
	hs := make([]uint64, n)
	order := make([]int32, n)
	for i, k := range keys {
		hs[i], order[i] = ix.idHash(k.ID), int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := cmp.Compare(hs[a], hs[b]); c != 0 {
			return c // ids are compared only when their hashes are equal
		}
		return cmp.Or(cmp.Compare(keys[a].ID, keys[b].ID), cmp.Compare(a, b))
	})
	kept := order[:0:0]
	for j, i := range order {
		if j+1 < len(order) && keys[order[j+1]].ID == keys[i].ID {
			continue // a later key has this id
		}
		kept = append(kept, i)
	}
	byID := kept // sorted by id hash
	bySvc := groupByService(keys, slices.Clone(kept))

	nIndiv := 0
	for _, i := range bySvc {
		nIndiv += len(keys[i].ContentAPI.Individual)
	}
	recs := make([]keyRec, len(bySvc))
	indiv := make([]indivEnt, 0, nIndiv)
	locs := make([]locator, n)
	b := &built{}
	for start := 0; start < len(bySvc); {
		service := keys[bySvc[start]].Service
		end := start
		for end < len(bySvc) && keys[bySvc[end]].Service == service {
			end++
		}
		sk := &svcKeys{service: service, svc: uint32(len(b.services)), n: end - start}
		b.services = append(b.services, sk)
		for lo := start; lo < end; lo += pageCap {
			hi := min(lo+pageCap, end)
			p := &keyPage{key: newPageKey(sk.svc, sk.last), service: service, live: hi - lo, recs: recs[lo:hi:hi]}
			first := len(indiv)
			nStrs := 0
			for j := lo; j < hi; j++ {
				nStrs += len(keys[bySvc[j]].ID) + len(keys[bySvc[j]].Name)
			}
			strs := make([]byte, 0, nStrs)
			for j := lo; j < hi; j++ {
				k := keys[bySvc[j]]
				r, err := ix.encode(k, &indiv, &strs)
				if err != nil {
					return nil, err
				}
				if r.indivN > 0 {
					r.indivOff -= uint32(first)
				}
				recs[j] = r
				locs[bySvc[j]] = p.loc(j - lo)
			}
			p.indiv = indiv[first:len(indiv):len(indiv)]
			p.strs = strs
			b.pages = append(b.pages, p)
			sk.last++
		}
		sk.last--
		start = end
	}

	secrets := make([]secretEnt, len(bySvc))
	for j, i := range bySvc {
		secrets[j] = secretEnt{hash: keys[i].secretHash, version: ix.version.Add(1), loc: locs[i]}
	}
	slices.SortFunc(secrets, func(a, b secretEnt) int { return bytes.Compare(a.hash[:], b.hash[:]) })
	for j := 1; j < len(secrets); j++ {
		if secrets[j].hash == secrets[j-1].hash {
			return nil, sharedSecret(keys, secrets[j].hash)
		}
	}
	for lo := 0; lo < len(secrets); {
		hi := lo
		for hi < len(secrets) && secrets[hi].hash[0] == secrets[lo].hash[0] && secrets[hi].hash[1] == secrets[lo].hash[1] {
			hi++
		}
		b.secrets = append(b.secrets, &secretBucket{prefix: [2]byte{secrets[lo].hash[0], secrets[lo].hash[1]}, ents: secrets[lo:hi:hi]})
		lo = hi
	}

	ids := make([]idEnt, len(byID))
	for j, i := range byID {
		ids[j] = idEnt{h: hs[i], loc: locs[i]}
	}
	for lo := 0; lo < len(ids); {
		hi := lo
		for hi < len(ids) && idPrefix(ids[hi].h) == idPrefix(ids[lo].h) {
			hi++
		}
		b.ids = append(b.ids, &idBucket{prefix: idPrefix(ids[lo].h), ents: ids[lo:hi:hi]})
		lo = hi
	}
	return b, nil
}

// groupByService returns the keys of idx (indexes into keys) grouped by
// service, services in order of first appearance and keys in input order
// within each (a counting sort: no string comparisons).
func groupByService(keys []*Key, idx []int32) []int32 {
	slices.Sort(idx) // input order
	group := make(map[string]int32)
	of := make([]int32, len(idx))
	var counts []int32
	for j, i := range idx {
		g, ok := group[keys[i].Service]
		if !ok {
			g = int32(len(counts))
			group[keys[i].Service] = g
			counts = append(counts, 0)
		}
		of[j] = g
		counts[g]++
	}
	start := make([]int32, len(counts))
	for g := 1; g < len(counts); g++ {
		start[g] = start[g-1] + counts[g-1]
	}
	out := make([]int32, len(idx))
	for j, i := range idx {
		out[start[of[j]]] = i
		start[of[j]]++
	}
	return out
}

// sharedSecret names two keys with secret hash h.
func sharedSecret(keys []*Key, h [32]byte) error {
	var ids []string
	for _, k := range keys {
		if k.secretHash == h {
			ids = append(ids, k.ID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) < 2 {
		ids = append(ids, ids...)
	}
	return fmt.Errorf("keys %q and %q share a secret hash", ids[0], ids[1])
}

func (b *built) insert(txn *memdb.Txn) error {
	for _, p := range b.pages {
		if err := txn.Insert(tableKeyPages, p); err != nil {
			return fmt.Errorf("insert key page: %w", err)
		}
	}
	for _, s := range b.secrets {
		if err := txn.Insert(tableKeySecrets, s); err != nil {
			return fmt.Errorf("insert secret bucket: %w", err)
		}
	}
	for _, s := range b.ids {
		if err := txn.Insert(tableKeyIDs, s); err != nil {
			return fmt.Errorf("insert id bucket: %w", err)
		}
	}
	for _, s := range b.services {
		if err := txn.Insert(tableKeyServices, s); err != nil {
			return fmt.Errorf("insert key count: %w", err)
		}
	}
	return nil
}
