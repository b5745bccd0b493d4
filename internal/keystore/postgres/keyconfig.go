package postgres

import (
	"encoding/json"

	"github.com/keygate/keygate/internal/keystore"
)

// decodeKeyConfig decodes a configuration column into c exactly as
// json.Unmarshal would, followed by ContentAPI.Clone (an empty individual
// map becomes nil; the map is c's own).
//
// A full load decodes one configuration per key, and encoding/json's
// reflection was most of a load's decoding time, so the text PostgreSQL
// sends for a jsonb value written by keygate (objects of known keys, each
// once, strings without escapes, true and false) goes through the key
// store's hand parser (keystore.ParseKeyConfig, shared with seeding).
// Anything else (an unknown, repeated or differently cased key, an escape,
// null, a number, trailing bytes) falls back to encoding/json on the whole
// value, so the result never depends on which path ran.
func decodeKeyConfig(b []byte, c *keyConfig) error {
	var fast keyConfig
	if keystore.ParseKeyConfig(b, &fast.ContentAPI, &fast.ManagementAPI) {
		*c = fast
		return nil
	}
	var slow keyConfig
	if err := json.Unmarshal(b, &slow); err != nil {
		return err
	}
	slow.ContentAPI = slow.ContentAPI.Clone()
	*c = slow
	return nil
}
