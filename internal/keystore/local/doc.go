// Package local is the single-node driver of keystore: the state file
// (snapshot plus checksummed log), the audit file, the IP restriction file,
// the state directory's lock and the upgrade of the previous format. It is
// keygate's default store:
//
//	store, err := keystore.New(ctx, local.New(local.Options{StatePath: path}), opts)
//
// ReadState reads a state without changing it, for keygate migrate, which
// imports it into PostgreSQL (postgres.Migrate).
//
// # Files
//
//	local.go        Driver, the Backend and its Tx: the write lock, the index
//	                write transaction, the log record, the commit
//	journal.go      the snapshot and the log, the log's format, compaction
//	snapshot.go     the snapshot's format 4: streamed encode, parallel strict decode
//	audit.go        the audit file and its crash reconciliation
//	ipfile.go       the IP restriction file
//	fsys.go         the file-system seam tests inject faults through
//	lock_*.go       the state directory's flock
//	upgrade_v2.go   the one-time upgrade of format 2
//	state.go        ReadState (keygate migrate --from-state)
//
// # Writes
//
// Key writes run under one write lock: lock, memdb write transaction,
// decision, change, durable log record, commit. The decision therefore sees
// the key count it is about to change, and N concurrent creates with room
// for k keys yield exactly k keys.
//
// # Durability: snapshot plus checksummed log
//
// State lives in two files: the snapshot at StatePath and StatePath+".log",
// an append-only log of length + CRC-32C framed JSON records, one per write,
// fsynced before the write is acknowledged, after a checksummed header that
// names the seq of the snapshot the log follows. Both files are only ever
// replaced whole: temp file, fsync, rename, fsync of the directory. Open
// replays the log over the snapshot and, when the log held records past the
// snapshot or the snapshot is of format 3, folds both into a new snapshot
// (otherwise it only starts a fresh empty log); a write also compacts when
// the log reaches Options.CompactAfter records.
//
// The snapshot (format 4, snapshot.go) is a JSON header line (format,
// version, seq, key count, its own CRC-32C), the keys as binary records in
// the log's checksummed frames, and an end frame holding the CRC-32C of the
// whole file: about 150 bytes a key. It is written as a stream into the
// temp file (checksums computed on the way, no buffer of the whole file) and
// read as one: a goroutine reads and checks the frames, GOMAXPROCS workers
// decode their records, strictly (every length bounded, each field checked
// as keystore.DecodeKeyRecord checks it, ids strictly increasing, so a
// duplicate is refused without a map), and the keys come back as a slice in
// id order for Index.Load, with the log's few changes merged in. Format 3,
// the JSON snapshot of the release before ({"format":"keygate-state",
// "version":3,"seq":N,"keys":[…],"checksum":"crc32c:<8 hex>"}), is still
// read whole and rewritten in format 4 by the start that reads it.
//
// Why not rewrite the whole state file on every write? That is O(keys) bytes
// and an fsync of a large file per write: at 100k keys, megabytes per key
// rotation. The log makes a write cost one small append and one fsync, while
// the snapshot keeps start-up a single streamed decode.
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
// refused with an error rather than read; version 2 is upgraded once at
// Open after a byte-identical backup of it is kept (upgrade_v2.go); version
// 3 is read as it is; a version after 4 is refused (a newer keygate wrote
// it). Nothing is ever half-loaded,
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
// # Audit file
//
// <state>.audit: "KGAUDv1\n", then the log's frames, one JSON entry each,
// ids 1, 2, 3, … An allowed write appends its entry under the write lock
// after its state log record is fsynced and before compaction; the entry is
// fsynced before the answer. Refusals append under the trail's own lock
// (never the write lock). A failed append breaks the trail for good (no
// fsync retry) and the store refuses writes until restart. At Open only a
// torn final entry is dropped (evidence copy <state>.audit.corrupt-<time>);
// other damage refuses the start. After a crash between a state log record
// and its entry, every record after the last entry that names its seq gets
// an entry marked recovered. Queries are served from memory; the trail is
// never compacted.
//
// # IP restriction file
//
// <state>.ip-restrictions.json holds every service's setting,
// {"format":"keygate-ip-restrictions","version":1,"services":{…}} with a
// CRC-32C trailer like the snapshot's, replaced whole (temp file, fsync,
// rename, directory fsync) under the write lock; the index changes only
// once the file is durable. When it does not exist, data/ip-restrictions.json
// seeds it.
//
// # Continuity: what refuses to start
//
// Each refusal names the file, the offset or field, and what to do; a
// refused start changes no file. "Restore the pair": state.json and
// state.json.log together, from one backup taken while keygate was stopped.
//
//	state on disk                                 Open
//	snapshot deleted, log kept                    refused: restore the pair
//	log deleted, snapshot kept                    refused: restore the pair
//	older snapshot beside the current log         refused (would bring back
//	                                              rotated-away secrets)
//	older log beside a newer snapshot             refused: restore the pair
//	a record missing or repeated (seq gap)        refused, offset named
//	snapshot bit flip (header line, a frame,      refused: restore the pair
//	  the end frame's file checksum), cut short,
//	  bytes after the end frame
//	snapshot records keygate never writes         refused, key named
//	  (checksums right): duplicate or unordered   (keys[i]): restore the pair
//	  ids, invalid id, unknown flag bits, extra
//	  bytes, a key count other than the header's
//	format-3 snapshot: bit flip, no checksum      refused: restore the pair
//	  trailer, invalid JSON, unknown field
//	log header or record header/payload damaged   refused, offset named
//	torn final record                             dropped with a warning,
//	                                              after an evidence copy
//	torn tail whose copy cannot be written        refused
//	version 1                                     refused
//	version 2                                     upgraded once, after a
//	                                              byte-identical backup
//	version 3                                     read; rewritten as 4 at Open
//	version 5 or later                            refused: a newer keygate
//	version 2 log damaged, or without snapshot,   refused, the format-2
//	  or mixed with a file of format 3 or 4       state unchanged
//	a format-2 keygate still running              refused: stop it
//	another keygate holds the directory           refused
//
// # Faults: what a failing disk does
//
// The files are reached only through fileSystem (fsys.go);
// fault_internal_test.go injects faults there and asserts what the caller
// saw and what a restart on the real file system finds.
//
//	fault                                  behaviour                       test
//	log fsync fails (EIO)                  500, key not in memory,         TestFaultLogSyncFails
//	                                       read-only until restart, no
//	                                       fsync retry; restart: every
//	                                       acknowledged key, the refused
//	                                       one whole or absent
//	log write fails (ENOSPC, EIO, short)   as above; the partial frame is  TestFaultLogWriteFails
//	                                       a torn tail the restart drops
//	compaction temp write or rename fails  write already acknowledged;     TestFaultCompaction
//	                                       retried later, state opens
//	directory fsync after a rename fails   read-only until restart         TestFaultCompaction
//	acknowledgement before durability      never: each acknowledged write  TestAckOnlyAfterSync
//	                                       follows its record's fsync
//	slow fsync                             writes wait, lookups do not     TestSlowSyncDoesNotDelayLookups
//	log removed or replaced while running  next write refused, read-only   TestStateLockSurvivesRemovedFiles
//	state files removed while running      the directory lock holds        TestStateLockSurvivesRemovedFiles
//	reading a file fails at Open           Open fails, nothing changed     TestFaultAtOpen
//	format-2 upgrade interrupted anywhere  the next start completes it     TestUpgradeV2Crash
//	audit append fails                     read-only until restart         TestAuditFaultWriteFails
//	crash between record and audit entry   entry marked recovered at Open  TestAuditCrashBetweenRecordAndEntry
//	SIGKILL at random, mid-compaction too  every acknowledged write        tests/crash TestCrashRecovery
//	                                       survives
//
// ../README.md has the messages word for word and what the operator does.
package local
