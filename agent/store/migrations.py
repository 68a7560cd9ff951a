"""Versioned schema migrations, one ordered list per component.

Each component (core, orders, consent, traces...) owns its tables and its list; its version is the number of
its migrations applied. Migrations only ever get appended: an applied one is never edited. Each runs in its own
transaction with the version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

from agent.errors import StoreError

MIGRATIONS: dict[str, list[str]] = {
    "core": [
        """
        CREATE TABLE api_tokens (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            secret_hash BLOB NOT NULL,
            created_at  TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at  TEXT
        );
        CREATE TABLE data_keys (
            id          TEXT PRIMARY KEY,
            wrapped     BLOB NOT NULL,
            created_at  TEXT NOT NULL
        );
        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ],
    # Consent history and CONF.21 acknowledgements (agent/store/consent.py); append-only, enforced by triggers.
    "consent": [
        """
        CREATE TABLE consent_records (
            id               INTEGER PRIMARY KEY,
            ins              TEXT NOT NULL,
            episode          TEXT NOT NULL DEFAULT '',
            informed         INTEGER NOT NULL,
            dmp_consultation TEXT NOT NULL,
            dmp_feeding      TEXT NOT NULL,
            recorded_by      TEXT,
            workstation      TEXT NOT NULL,
            client           TEXT NOT NULL,
            recorded_at      TEXT NOT NULL
        );
        CREATE INDEX consent_records_ins ON consent_records(ins, id);
        CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
        BEGIN SELECT RAISE(ABORT, 'consent history is append-only'); END;
        CREATE TRIGGER consent_records_no_delete BEFORE DELETE ON consent_records
        BEGIN SELECT RAISE(ABORT, 'consent history is append-only'); END;
        CREATE TABLE notice_acks (
            id               INTEGER PRIMARY KEY,
            rpps             TEXT NOT NULL,
            notice_id        TEXT NOT NULL,
            version          INTEGER NOT NULL,
            acknowledged_at  TEXT NOT NULL,
            workstation      TEXT NOT NULL
        );
        CREATE INDEX notice_acks_rpps ON notice_acks(rpps, notice_id, version, acknowledged_at);
        """,
    ],
    # Access traces (agent/store/traces.py, agent/audit): a hash chain; UPDATE and DELETE refused by triggers.
    "traces": [
        """
        CREATE TABLE traces (
            seq          INTEGER PRIMARY KEY,
            at           TEXT NOT NULL,
            action       TEXT NOT NULL,
            actor_rpps   TEXT,
            workstation  TEXT NOT NULL,
            client       TEXT NOT NULL,
            mode         TEXT NOT NULL,
            ins          TEXT,
            object       TEXT,
            outcome      TEXT NOT NULL,
            details      TEXT NOT NULL,
            prev_hash    TEXT NOT NULL,
            hash         TEXT NOT NULL
        );
        CREATE INDEX traces_at ON traces(at);
        CREATE INDEX traces_ins ON traces(ins, seq);
        CREATE INDEX traces_actor ON traces(actor_rpps, seq);
        CREATE TRIGGER traces_no_update BEFORE UPDATE ON traces
        BEGIN SELECT RAISE(ABORT, 'traces are append-only'); END;
        CREATE TRIGGER traces_no_delete BEFORE DELETE ON traces
        BEGIN SELECT RAISE(ABORT, 'traces are append-only'); END;
        """,
        # Each row's hash authenticated with a key sealed under the master key: rewriting the chain needs it.
        """
        ALTER TABLE traces ADD COLUMN mac TEXT NOT NULL DEFAULT '';
        """,
    ],
    # Send-orders (agent/store/orders.py): orders, one delivery per destination, and each attempt.
    "orders": [
        """
        CREATE TABLE orders (
            seq                      INTEGER PRIMARY KEY AUTOINCREMENT,
            id                       TEXT NOT NULL UNIQUE,
            client_ref               TEXT UNIQUE,
            client_name              TEXT NOT NULL,
            body_hash                TEXT NOT NULL,
            ins                      TEXT NOT NULL,
            ins_oid                  TEXT NOT NULL,
            identity_status          TEXT NOT NULL,
            author_rpps              TEXT NOT NULL,
            document_unique_id       TEXT NOT NULL,
            submission_set_unique_id TEXT NOT NULL UNIQUE,
            type_code                TEXT NOT NULL,
            key_id                   TEXT,
            payload                  BLOB,
            created_at               REAL NOT NULL,
            send_at                  REAL NOT NULL,
            content_erased_at        REAL
        );
        CREATE INDEX orders_document ON orders(document_unique_id);
        CREATE INDEX orders_ins ON orders(ins);
        CREATE TABLE deliveries (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            order_seq       INTEGER NOT NULL REFERENCES orders(seq),
            destination     TEXT NOT NULL,
            kind            TEXT NOT NULL,
            state           TEXT NOT NULL,
            due_at          REAL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            round_attempts  INTEGER NOT NULL DEFAULT 0,
            uncertain       INTEGER NOT NULL DEFAULT 0,
            last_error_code TEXT,
            last_error      TEXT,
            last_error_at   REAL,
            sent_at         REAL,
            entry_uuid      TEXT,
            reconciled      INTEGER NOT NULL DEFAULT 0,
            updated_at      REAL NOT NULL,
            UNIQUE (order_seq, destination)
        );
        CREATE INDEX deliveries_state_due ON deliveries(state, due_at);
        CREATE TABLE attempts (
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
            number      INTEGER NOT NULL,
            started_at  REAL NOT NULL,
            ended_at    REAL,
            outcome     TEXT,
            error_code  TEXT,
            error       TEXT,
            PRIMARY KEY (delivery_id, number)
        );
        """,
        # v2: the executor takes ready deliveries oldest order first; this index gives them in that order.
        """
        CREATE INDEX deliveries_ready ON deliveries(state, order_seq, id);
        """,
    ],
    # MSSanté (agent/store/mss_acks.py): acknowledgements (DSN, MDN) read from the sender's mailbox, keyed by the
    # Message-ID of the delivery they answer, and where the mailbox reading stopped.
    "mss": [
        """
        CREATE TABLE mss_acks (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id      TEXT NOT NULL,
            kind            TEXT NOT NULL,
            outcome         TEXT NOT NULL,
            status          TEXT NOT NULL,
            reported_at     TEXT NOT NULL,
            received_at     REAL NOT NULL,
            ack_key         TEXT NOT NULL UNIQUE
        );
        CREATE INDEX mss_acks_message ON mss_acks(message_id);
        CREATE TABLE mss_mailbox (
            mailbox     TEXT PRIMARY KEY,
            uidvalidity INTEGER NOT NULL,
            last_uid    INTEGER NOT NULL
        );
        """,
    ],
    # INS provenance (agent/store/ins_provenance.py): every INS INSi returned as the active one (CR 00), with its
    # OID, when, how and for whom; never a name or a trait. The DMP takes only INS obtained this way.
    "ins": [
        """
        CREATE TABLE ins_provenance (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            ins         TEXT NOT NULL,
            oid         TEXT NOT NULL,
            obtained_at TEXT NOT NULL,
            operation   TEXT NOT NULL,
            rpps        TEXT,
            structure   TEXT,
            workstation TEXT NOT NULL
        );
        CREATE INDEX ins_provenance_ins ON ins_provenance(ins, id);
        """,
    ],
    # The order list and /v1/status at scale (issue 24 #5): each order carries its summary state (the most pressing
    # state of its deliveries: SUMMARY_PRIORITY of agent/domain/orders.py, as order_state_rank), kept by triggers
    # whatever code changes a delivery, and the number of orders in each state is kept in order_counts: every
    # filter of GET /v1/orders is an index search and /v1/status reads ten rows, however many orders the store holds.
    "order_summary": [
        """
        CREATE TABLE order_state_rank (state TEXT PRIMARY KEY, rank INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO order_state_rank(state, rank) VALUES ('sending', 0), ('failed', 1), ('waiting_card', 2),
            ('waiting_network', 3), ('retrying', 4), ('ready', 5), ('scheduled', 6), ('forwarded', 7), ('sent', 8),
            ('cancelled', 9);
        ALTER TABLE orders ADD COLUMN state TEXT;
        UPDATE orders SET state = coalesce((SELECT r.state FROM deliveries d
                                  JOIN order_state_rank r ON r.state = d.state
                                  WHERE d.order_seq = orders.seq ORDER BY r.rank LIMIT 1), 'cancelled');
        CREATE INDEX orders_state ON orders(state);
        CREATE INDEX orders_author ON orders(author_rpps);
        CREATE INDEX orders_ins_state ON orders(ins, state);
        CREATE INDEX orders_author_state ON orders(author_rpps, state);
        CREATE INDEX orders_settled ON orders(seq) WHERE key_id IS NOT NULL AND state IN ('sent', 'cancelled');
        CREATE TABLE order_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO order_counts(state, n) SELECT state, count(*) FROM orders WHERE state IS NOT NULL GROUP BY state;
        CREATE TRIGGER deliveries_summary_insert AFTER INSERT ON deliveries
        BEGIN
            UPDATE orders SET state = coalesce((SELECT r.state FROM deliveries d
                                  JOIN order_state_rank r ON r.state = d.state
                                  WHERE d.order_seq = NEW.order_seq ORDER BY r.rank LIMIT 1), 'cancelled')
            WHERE seq = NEW.order_seq;
        END;
        CREATE TRIGGER deliveries_summary_update AFTER UPDATE OF state ON deliveries WHEN OLD.state IS NOT NEW.state
        BEGIN
            UPDATE orders SET state = coalesce((SELECT r.state FROM deliveries d
                                  JOIN order_state_rank r ON r.state = d.state
                                  WHERE d.order_seq = NEW.order_seq ORDER BY r.rank LIMIT 1), 'cancelled')
            WHERE seq = NEW.order_seq;
        END;
        CREATE TRIGGER orders_count_state AFTER UPDATE OF state ON orders WHEN OLD.state IS NOT NEW.state
        BEGIN
            UPDATE order_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO order_counts(state, n) VALUES (NEW.state, 1) ON CONFLICT(state) DO UPDATE SET n = n + 1;
        END;
        """,
    ],
    # PRE_ERR: a delivery's last refusal keeps the national service's own code and text (the DMP's registry error,
    # SOAP fault or HL7v3 acknowledgement) beside the French message.
    "remote_errors": [
        """
        ALTER TABLE deliveries ADD COLUMN last_remote_code TEXT;
        ALTER TABLE deliveries ADD COLUMN last_remote_text TEXT;
        """,
    ],
    # DMP documents this workstation manages (issue 15/16, TD2.1b): the visibility a document was last given by
    # TD3.3a/b here (agent/store/dmp_documents.py), so that a replacement never hides again what the patient saw;
    # and the look-up of a replaced version by the entryUUID the DMP gave its delivery.
    "dmp_documents": [
        """
        CREATE TABLE dmp_visibility (
            unique_id TEXT PRIMARY KEY, masked_to_ps INTEGER NOT NULL, invisible_to_patient INTEGER NOT NULL,
            invisible_to_legal_reps INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX deliveries_entry_uuid ON deliveries(entry_uuid) WHERE entry_uuid IS NOT NULL;
        """,
    ],
}


def register(component: str, statements: list[str]) -> None:
    """Add a component's migrations (called at import by the component's repository module)."""
    existing = MIGRATIONS.setdefault(component, [])
    if existing and existing != statements[: len(existing)]:
        raise RuntimeError(f"migrations of {component!r} were rewritten; append only")
    MIGRATIONS[component] = list(statements)


def apply_migrations(conn: sqlite3.Connection) -> dict[str, int]:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    versions = {row[0]: row[1] for row in conn.execute("SELECT component, version FROM schema_versions")}
    for component, statements in MIGRATIONS.items():
        current = versions.get(component, 0)
        if current > len(statements):
            raise StoreError(
                f"la base de l'agent a été écrite par une version plus récente de Relais ({component} v{current}, "
                f"cet agent connaît v{len(statements)}) : installez la version la plus récente de Relais. La base "
                "n'a pas été modifiée.", code="store_too_new")
        for number in range(current, len(statements)):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split(statements[number]):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions(component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, number + 1),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        versions[component] = len(statements)
    return versions


def _split(script: str) -> list[str]:
    """Statements of a script; sqlite3.complete_statement keeps triggers' inner semicolons together."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
