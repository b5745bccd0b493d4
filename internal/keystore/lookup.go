package keystore

// KeyByID returns a key by id, as it is now: for replaying logged
// decisions, which name keys by id (never by secret). The returned key's
// Individual map is shared: treat it as read-only.
func (s *Store) KeyByID(id string) (Key, bool) {
	raw, err := s.db.Txn(false).First(tableKeys, indexID, id)
	if err != nil || raw == nil {
		return Key{}, false
	}
	return *raw.(*Key), true
}
