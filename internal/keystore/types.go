package keystore

import (
	"encoding/json"
	"time"
)

// ContentPerms is a content API permission set (missing flags are false).
// getAllDrafts/getAllClosed without get is an invalid configuration; the
// policy refuses such writes, and the store refuses such seed keys.
type ContentPerms struct {
	Get          bool `json:"get"`
	GetAllDrafts bool `json:"getAllDrafts"`
	GetAllClosed bool `json:"getAllClosed"`
	Post         bool `json:"post"`
	Put          bool `json:"put"`
	Patch        bool `json:"patch"`
	Delete       bool `json:"delete"`
}

// ManagementPerms is the management API (beta) permission set.
type ManagementPerms struct {
	GetContents           bool `json:"getContents"`
	PatchContentCreatedBy bool `json:"patchContentCreatedBy"`
	PatchContentStatus    bool `json:"patchContentStatus"`
	GetMedia              bool `json:"getMedia"`
	PostMedia             bool `json:"postMedia"`
	DeleteMedia           bool `json:"deleteMedia"`
	GetMembers            bool `json:"getMembers"`
	GetApis               bool `json:"getApis"`
	GetService            bool `json:"getService"`
}

// ContentAPI holds a key's default permissions and its per-endpoint
// individual permissions; an individual entry replaces the default entirely.
type ContentAPI struct {
	Default    ContentPerms            `json:"default"`
	Individual map[string]ContentPerms `json:"individual"`
}

// MarshalJSON writes a nil Individual map as {} so that policies and clients
// always see an object, never null.
func (c ContentAPI) MarshalJSON() ([]byte, error) {
	type plain ContentAPI
	p := plain(c)
	if p.Individual == nil {
		p.Individual = map[string]ContentPerms{}
	}
	return json.Marshal(p)
}

// Clone returns a deep copy of c (the individual map is shared otherwise).
func (c ContentAPI) Clone() ContentAPI {
	out := ContentAPI{Default: c.Default}
	if len(c.Individual) > 0 {
		out.Individual = make(map[string]ContentPerms, len(c.Individual))
		for ep, p := range c.Individual {
			out.Individual[ep] = p
		}
	}
	return out
}

// KeySpec is the writable part of a key: what a create or a PUT carries.
// The HTTP server decodes request bodies straight into it.
type KeySpec struct {
	Name          string          `json:"name"`
	ContentAPI    ContentAPI      `json:"contentApi"`
	ManagementAPI ManagementPerms `json:"managementApi"`
}

// Key is an API key's metadata. It never carries the secret or its hash, so
// it can be marshalled into responses and policy input as is.
//
// The index does not hold Keys: it keeps a compact record of each and
// every Key it returns is built from that record, with an Individual map
// of its own. The decision path reads a KeyRef instead, which builds the
// Key only when it is needed.
type Key struct {
	ID            string          `json:"id"`
	Service       string          `json:"service"`
	Name          string          `json:"name"`
	ContentAPI    ContentAPI      `json:"contentApi"`
	ManagementAPI ManagementPerms `json:"managementApi"`
	CreatedBy     string          `json:"createdBy"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
	Revision      uint64          `json:"revision"`

	secretHash [32]byte
}

func (k *Key) clone() Key {
	out := *k
	out.ContentAPI = k.ContentAPI.Clone()
	return out
}

// Service is a CMS service from data/services.json: its id, its plan and,
// optionally, its content API endpoints. APIs nil means the service does not
// list them (nothing is known); an empty list means it has none.
type Service struct {
	ID   string   `json:"id"`
	Plan string   `json:"plan"`
	APIs []string `json:"apis,omitzero"`
}

// Member is a person who may manage a service's keys, from data/members.json.
// It marshals to the `member` object of the keys policy input; the token hash
// is never marshalled.
type Member struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Role    string `json:"role"`

	tokenHash [32]byte
}

// Created is the answer to a create or a rotation: the key, its secret
// (shown this once, never stored in plain text) and the policy's warnings.
// It marshals flat: the key's fields plus "secret" and "warnings".
type Created struct {
	Key
	Secret   string    `json:"secret"`
	Warnings []Warning `json:"warnings"`
	// Replayed: the answer repeats an earlier write with the same
	// idempotency key; nothing was written now, and Secret is empty (a
	// secret is shown once).
	Replayed bool `json:"-"`
}

// Updated is the answer to a PUT: the new key and the policy's warnings.
type Updated struct {
	Key
	Warnings []Warning `json:"warnings"`
	// Replayed: see Created.
	Replayed bool `json:"-"`
}
