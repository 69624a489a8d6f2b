import Storage

/// The tables of the exactly-once loop, shared by every service. Services number their
/// own migrations from 100 up.
public enum RuntimeSchema {
    /// Tables a changelog leaves out: rows the relay deletes as Kafka acknowledges them, what
    /// one host or one running instance knows (failures counted against a record, the cluster
    /// the store was claimed for, frontiers of live instances), and the migrations a new store
    /// runs itself.
    public static let unloggedTables: Set<String> = [
        "outbox", "crash_strikes", "store_identity", "task_frontier", "schema_migrations",
    ]

    /// The capture of what a store's changelog carries: every table but ``unloggedTables``,
    /// with rows a changelog holds in an older shape read through `upgrades` (the service's
    /// ``StreamProcessor/loggedRowUpgrades``). The one capture for logging, restoring and
    /// keeping copies, so that all three agree on what is logged.
    public static func changelogCapture(of database: Database, upgrades: [LoggedRowUpgrade]) throws -> ChangeCapture {
        try ChangeCapture(database: database, excluding: unloggedTables, upgrades: upgrades)
    }

    public static let migrations: [Migration] = [
        Migration(version: 1, name: "exactly-once runtime", sql: """
            -- Event ids already applied, with a hash of the payload to tell re-sends from conflicts.
            CREATE TABLE inbox(
                event_id TEXT PRIMARY KEY,
                payload_hash INTEGER NOT NULL,
                task INTEGER NOT NULL,
                event_time INTEGER NOT NULL
            ) WITHOUT ROWID;
            -- Records committed but not yet acknowledged by Kafka. AUTOINCREMENT: a sequence
            -- number is never reused, so a late delivery report cannot delete a newer row.
            CREATE TABLE outbox(
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                key BLOB,
                value BLOB
            );
            -- The next offset to read, per input partition: the offsets that count.
            CREATE TABLE offsets(
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                next_offset INTEGER NOT NULL,
                PRIMARY KEY(topic, partition)
            ) WITHOUT ROWID;
            -- Stream time of each task: the latest event time applied.
            CREATE TABLE task_clock(
                task INTEGER PRIMARY KEY,
                stream_time INTEGER NOT NULL
            );
            -- Timers, fired in (due, rank, member, kind, ref) order.
            CREATE TABLE timers(
                task INTEGER NOT NULL,
                due INTEGER NOT NULL,
                rank INTEGER NOT NULL,
                member TEXT NOT NULL,
                kind TEXT NOT NULL,
                ref TEXT NOT NULL,
                payload BLOB,
                PRIMARY KEY(task, due, rank, member, kind, ref)
            ) WITHOUT ROWID;
            CREATE INDEX timers_by_ref ON timers(member, kind, ref);
            """),
        Migration(version: 2, name: "echoes", sql: """
            -- Commands the service sent to its own input topics and has not applied yet. While
            -- one is on its way, records of this instance that sort after it wait for it.
            CREATE TABLE echoes(
                event_id TEXT PRIMARY KEY,
                topic TEXT NOT NULL,
                task INTEGER NOT NULL,
                time INTEGER NOT NULL,
                rank INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX echoes_by_task ON echoes(topic, task);
            """),
        Migration(version: 3, name: "parked records", sql: """
            -- Records of members not registered yet (ParkedRecords), kept until the member
            -- registers or the wait ends.
            CREATE TABLE parked_records(
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                member TEXT NOT NULL,
                event_id TEXT NOT NULL UNIQUE,
                time INTEGER NOT NULL,
                rank INTEGER NOT NULL,
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                value BLOB NOT NULL
            );
            CREATE INDEX parked_records_by_member ON parked_records(member, time, rank, event_id);
            """),
        Migration(version: 4, name: "store identity", sql: """
            -- Facts about where the store comes from: the Kafka cluster id its offsets belong to.
            CREATE TABLE store_identity(
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID;
            """),
        Migration(version: 5, name: "inbox horizon", sql: """
            -- The inbox is pruned by event time, task by task (BatchApplier.inboxHorizon).
            CREATE INDEX inbox_by_task_time ON inbox(task, event_time);
            -- Records applied per task since the store began: progress, now that the inbox forgets.
            ALTER TABLE task_clock ADD COLUMN applied INTEGER NOT NULL DEFAULT 0;
            -- Records of sorted (command) partitions handed out above the stored offset: they leave
            -- out of offset order, so after a restart they are read again, and recognised here
            -- rather than by an inbox row that may have been pruned.
            CREATE TABLE applied_offsets(
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                PRIMARY KEY(topic, partition, record_offset)
            ) WITHOUT ROWID;
            """),
        Migration(version: 6, name: "poison records", sql: """
            -- The input record the service last failed on (CrashNote), and how many starts in a row
            -- it did: at two it is dead-lettered as a poison record. One row at most.
            CREATE TABLE crash_strikes(
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                strikes INTEGER NOT NULL,
                cause TEXT NOT NULL,
                PRIMARY KEY(topic, partition, record_offset)
            ) WITHOUT ROWID;
            """),
        Migration(version: 7, name: "progress between services", sql: """
            -- A record for a chosen partition rather than its key's (a task's progress mark).
            ALTER TABLE outbox ADD COLUMN partition INTEGER;
            -- The latest progress mark of each awaited producer on each input partition, and the
            -- offset it was read at: it counts once the partition has been read past that offset.
            CREATE TABLE upstream_progress(
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                producer TEXT NOT NULL,
                time INTEGER NOT NULL,
                idle INTEGER NOT NULL,
                positions TEXT NOT NULL,
                record_offset INTEGER NOT NULL,
                PRIMARY KEY(topic, partition, producer)
            ) WITHOUT ROWID;
            """),
        Migration(version: 8, name: "frontiers of tasks", sql: """
            -- Per task, the merge key below which its owner has nothing left to apply, as of the
            -- owner's last commit (TaskFrontier): instances sharing the store hold their merge at
            -- the lowest frontier of the tasks they do not own, so that a command one of those
            -- tasks sends is applied at its event time. NULL time: not known (holds everyone).
            CREATE TABLE task_frontier(
                task INTEGER PRIMARY KEY,
                time INTEGER,
                rank INTEGER NOT NULL,
                event_id TEXT NOT NULL
            );
            -- The earliest command on its way, read with the frontiers.
            CREATE INDEX echoes_by_key ON echoes(time, rank, event_id);
            """),
        Migration(version: 9, name: "promises of tasks", sql: """
            -- What the task can promise by itself, for the other instances' progress marks
            -- (NULL: nothing yet; `promise_idle` 1: it has read everything).
            ALTER TABLE task_frontier ADD COLUMN promise INTEGER;
            ALTER TABLE task_frontier ADD COLUMN promise_idle INTEGER NOT NULL DEFAULT 0;
            """),
        Migration(version: 10, name: "peer marks", sql: """
            -- In a task's own store (the `task` layout) of a service whose tasks send each other
            -- commands: the last mark of each other task read on this task's partition
            -- (PeerMark), kept with the offsets that read past it, since the peer sends it
            -- again only once it changes.
            CREATE TABLE peer_marks(
                task INTEGER PRIMARY KEY,
                own_time INTEGER NOT NULL,
                own_rank INTEGER NOT NULL,
                read_time INTEGER NOT NULL,
                read_rank INTEGER NOT NULL
            );
            """),
        Migration(version: 11, name: "peer marks numbered, with answers and holds", sql: """
            -- A task's side of the peer marks (PeerMarkBook), kept with the offsets read past
            -- the marks: the last mark of each other task read (a newer one replaces it, an
            -- older one read again does not), whether this task owes it an answer, the
            -- commands this task sent whose receivers have not acknowledged the mark after
            -- them, and what this task last published. A mark's number is its sender's epoch
            -- (one per take-over) and its count within it.
            DROP TABLE peer_marks;
            CREATE TABLE peer_marks(
                task INTEGER PRIMARY KEY,
                epoch INTEGER NOT NULL,
                count INTEGER NOT NULL,
                own_time INTEGER NOT NULL,
                own_rank INTEGER NOT NULL,
                read_time INTEGER NOT NULL,
                read_rank INTEGER NOT NULL,
                acknowledges_epoch INTEGER NOT NULL,
                acknowledges_count INTEGER NOT NULL,
                answer_owed INTEGER NOT NULL
            );
            CREATE TABLE peer_holds(
                task INTEGER NOT NULL,
                epoch INTEGER NOT NULL,
                count INTEGER NOT NULL,
                time INTEGER NOT NULL,
                rank INTEGER NOT NULL,
                PRIMARY KEY(task, epoch, count)
            );
            -- One row: this task's last published number, and its figures (NULL: none
            -- published since it was taken on).
            CREATE TABLE peer_mark_published(
                task INTEGER PRIMARY KEY,
                epoch INTEGER NOT NULL,
                count INTEGER NOT NULL,
                own_time INTEGER,
                own_rank INTEGER,
                read_time INTEGER,
                read_rank INTEGER
            );
            """),
        Migration(version: 12, name: "peer marks with deeper figures", sql: """
            -- For a service whose chains of commands are longer than two: a mark's figures past
            -- `readFromPeers`, as `time:rank` pairs joined by commas ('' for none).
            ALTER TABLE peer_marks ADD COLUMN deeper TEXT NOT NULL DEFAULT '';
            ALTER TABLE peer_mark_published ADD COLUMN deeper TEXT;
            """),
        Migration(version: 13, name: "progress marks that promise a key", sql: """
            -- A mark whose promise within its millisecond goes to a merge key (ProgressMark.tie):
            -- the rank and event id nothing sorts before; NULL for a promise to the millisecond.
            ALTER TABLE upstream_progress ADD COLUMN tie_rank INTEGER;
            ALTER TABLE upstream_progress ADD COLUMN tie_id TEXT;
            """),
    ]
}
