// Package openapi holds keygate's HTTP contract: an OpenAPI 3.1 document
// of every endpoint the server answers, embedded in the binary and served
// at /v1/openapi.json. The end-to-end tests validate every request they
// send and every answer they get against it, so it cannot drift from the
// server.
package openapi

import _ "embed"

//go:embed openapi.json
var document []byte

// Document returns the OpenAPI document as JSON. The slice is shared:
// callers must not modify it.
func Document() []byte { return document }
