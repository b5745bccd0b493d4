// Package keystore holds keygate's services, members and API keys in
// go-memdb and makes key writes durable through a driver.
//
// Lookups (KeyBySecret, MemberByToken, Service) hash the presented secret or
// token with SHA-256 and read one index of an immutable memdb snapshot: no
// lock, a handful of small allocations. Plain secrets and tokens are never
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
// Stale and Close complete it. Tx is what the algorithm may read and write
// inside the transaction. A driver whose index is fed from elsewhere (a
// change feed) changes the Store's index only through Index (Load, Apply).
// The Store never asks which driver it has.
//
// Two drivers exist, each in files of its own:
//
//	local_*.go, local.go   the state file (snapshot + checksummed log), the
//	                       audit file, the IP restriction file, the directory
//	                       lock, the format upgrade; the default
//	postgres_*.go,         schema and migrations, the Tx over pgx, commit
//	postgres.go            resolution, the change feed, read-only mode, and
//	                       the import of a local state (keygate migrate)
//
// keystoretest.RunContract is the behaviour both must have; every driver's
// tests run it (contract_test.go).
//
// # Local driver
//
// Key writes run under one write lock: lock, memdb write transaction,
// decision, change, durable log record, commit. The decision therefore sees
// the key count it is about to change, and N concurrent creates with room
// for k keys yield exactly k keys.
//
// # Durability: snapshot plus checksummed log
//
// State lives in two files: the snapshot at StatePath (JSON, every key with
// its secret hash, ending with a CRC-32C of every byte before it) and
// StatePath+".log", an append-only log of length + CRC-32C framed JSON
// records, one per write, fsynced before the write is acknowledged, after a
// checksummed header that names the seq of the snapshot the log follows. Both
// files are only ever replaced whole: temp file, fsync, rename, fsync of the
// directory. Open replays the log over the snapshot and folds both into a new
// snapshot; a write also compacts when the log reaches Options.CompactAfter
// records.
//
// Why not rewrite the whole state file on every write? That is O(keys) bytes
// and an fsync of a large file per write: at 100k keys, megabytes per key
// rotation. The log makes a write cost one small append and one fsync, while
// the snapshot keeps start-up a single JSON decode.
//
// # Continuity: only the acknowledged state starts
//
// Records carry consecutive sequence numbers from the log's base seq on.
// Compaction renames the snapshot into place before the log, so a crash
// between the two leaves the new snapshot beside the log it was folded from
// (whose records up to the snapshot's seq are skipped, never applied twice).
// Open proves that the pair on disk is one keygate wrote: a log without a
// snapshot, a snapshot without a log, a log that follows a later snapshot
// (an older snapshot restored beside a newer log, which would bring back a
// rotated-away secret), a log that ends before the snapshot, a gap or a
// repeat of seq, a snapshot whose checksum fails — each refuses to start
// with the file, the offset or field, and what to do.
//
// Crash behaviour: a crash can only tear the record being appended, which was
// never acknowledged. Each frame header carries a checksum of its own (over
// the length and the payload checksum), so a damaged length is told apart
// from a torn append. At Open only a torn final frame is dropped — fewer
// bytes than a header, a valid header whose payload runs past the end of the
// file, or a zero-filled tail — after the log as found is copied to
// <log>.corrupt-<unix time> and with a warning naming the file, offset and
// copy: the valid prefix, which holds every acknowledged write, is recovered.
// Anything else is corruption and fails Open. Version 1 of the state is
// refused with an error rather than read; version 2, what the previous
// release wrote, is upgraded once at Open after a byte-identical backup of
// it is kept (local_upgrade_v2.go). Nothing is ever half-loaded,
// and a damaged state never silently becomes an empty store.
//
// One keygate per state directory: Open takes an flock on the directory
// itself, which removing files cannot release; and a write whose log was
// removed or replaced while keygate ran is refused rather than acknowledged
// into a file no restart would read.
//
// If an append, an fsync or a directory fsync after a rename fails while
// running, memory and disk may disagree, so the store refuses further
// writes until restart (lookups keep working); fsync is never retried. The
// journal reaches the disk only through a small file-system interface, so
// tests inject those faults (fault_internal_test.go).
//
// # Audit trail
//
// Every key write attempt, allowed or refused, is an AuditEntry made durable
// before it is answered: in <state>.audit after the state log record
// (reconciled at Open after a crash between the two), or in PostgreSQL's
// audit table in the write's own transaction (audit.go, local_audit.go,
// postgres_audit.go).
//
// # PostgreSQL driver
//
// With Options.Postgres keys, services, members, IP restriction settings and
// the audit trail live in PostgreSQL (postgres.go, postgres_tx.go): one READ
// COMMITTED transaction per write that locks the service row, decides on
// its key count, and writes the key, the next revision, a change row (the
// persisted key encoding) and the audit row before the commit. Every
// replica decides from its own index, fed by the database's change log
// through Index; see README.md.
package keystore
