// Package keystore holds keygate's services, members and API keys in
// go-memdb and makes key writes durable through a driver.
//
// Lookups (KeyBySecret, MemberByToken, Service) hash the presented secret or
// token with SHA-256 and read an immutable memdb snapshot: no lock, a
// handful of small allocations. Keys are kept compactly (index.go): pages of
// records per service and buckets by secret hash and by id. Plain secrets and tokens are never
// stored or logged; a secret is returned once, by CreateKey or RotateKey.
//
// # The seam: Store above, a Backend below
//
// The Store owns what every driver shares: the index (index.go, schema.go),
// the lookups, the domain types, the one persisted key encoding
// (record.go), and the one write algorithm (write.go):
//
//	screen     structural limits (400 before any authorization), then the
//	           policy's decision on a read snapshot: a deny is answered at
//	           once, so refused callers never hold up admin writes
//	authorize  in Backend.Update's transaction, on the authoritative state:
//	           the member, the service and its key count come from the Tx
//	           (locked against other writes), and the Authorizer decides again
//	replay     a retry with the same Idempotency-Key by the same member is
//	           answered from the audit trail (read access required)
//	put/delete the key drawn (id and secret redrawn up to 5 times while in
//	           use, as the Tx sees them), written through the Tx
//	audit      the change's entry recorded through the Tx, made durable with
//	           it; a refusal's entry is recorded by Store before it is
//	           answered (Backend.Audit)
//
// Every audit entry passes AuditEntry.bound where it is written: identifiers
// at most 128 bytes, the message and configuration names at most 512, at most
// 1000 endpoints, a NUL byte escaped as the six characters \u0000 and bytes
// that are not UTF-8 replaced by U+FFFD (both drivers keep the same text; an
// audit trail written before the bounds is imported with the same escaping
// and nothing cut).
//
// A Backend (backend.go) is a driver: Update runs the algorithm's
// authoritative part in one write transaction and makes its changes durable
// (fsync or commit) before returning; ReloadData, Audit, AuditPage, Status,
// Stale, TimePrecision and Close complete it. Tx is what the algorithm may
// read and write inside the transaction. Index is all a driver may do to
// the Store's index: Load and Apply (a change feed), ReplaceDirectory, and
// Write, a write transaction (IndexTxn) the local driver commits once its
// log record is durable. The Store never asks which driver it has.
//
// Each driver is a package of its own that imports this one; this package
// imports none of them. The caller picks one and hands it to New:
//
//	keystore.New(ctx, local.New(local.Options{StatePath: …}), opts)
//	keystore.New(ctx, postgres.New(url, postgres.Options{…}), opts)
//
//	local/      the state file (snapshot + checksummed log), the audit file,
//	            the IP restriction file, the directory lock, the format
//	            upgrade, and reading a state for keygate migrate; the default
//	postgres/   schema and migrations, the Tx over pgx, commit resolution,
//	            the change feed, read-only mode, and the import of another
//	            store's content (Migrate of an Import)
//
// Options are what every driver shares (data directory, authorizers,
// logger, clock); each driver has Options of its own. What a driver needs
// of this package beyond the seam is exported for it: the persisted key
// encoding (KeyRecord), the data/ loaders (LoadDirectory, LoadSeedKeys,
// ReadIPSeed), InternalError and UnavailableError, and SecretHash and
// TokenHash with their setters. Those hashes are never part of what a
// lookup returns: Key and Member carry them unexported and never marshal
// them.
//
// keystoretest.RunContract is the behaviour every driver must have; each
// driver package runs it (contract_test.go).
//
// # Audit trail
//
// Every key write attempt, allowed or refused, is an AuditEntry made durable
// before it is answered (audit.go): by the driver, with the change, for an
// allowed write (Tx.RecordAudit), by Backend.Audit for a refusal. Each
// driver's doc.go says where and how.
package keystore
