import { MysqlAdapter, sql, type Kysely } from 'kysely';

/**
 * Idempotency-Key records (docs/design-notes.md, "Idempotency keys in the write's
 * transaction"): one row per (caller, key), written in the same transaction as the write it
 * stands for, so it exists exactly when that write committed. `fingerprint` (method, path,
 * media type, body hash) tells a retry from a different request under the same key; `status`,
 * `user_id`, `users_generation` and `body` are what a replay answers from. Expired rows are
 * found by the index on `expires_at_ms`, never by a scan. Idempotent: a test or an operator
 * may run this migration again after deleting its record.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Keys compare byte for byte: a MariaDB database's default collation may ignore case.
  const ascii = (length: number) =>
    db.getExecutor().adapter instanceof MysqlAdapter
      ? sql`varchar(${sql.raw(String(length))}) character set ascii collate ascii_bin`
      : sql`varchar(${sql.raw(String(length))})`;
  await db.schema
    .createTable('idempotency_keys')
    .ifNotExists()
    .addColumn('caller', ascii(64), (col) => col.notNull())
    // An sf-string is printable ASCII: 255 characters are 255 bytes in the primary key.
    .addColumn('idem_key', ascii(255), (col) => col.notNull())
    .addColumn('fingerprint', ascii(64), (col) => col.notNull())
    .addColumn('status', 'integer', (col) => col.notNull())
    .addColumn('user_id', 'bigint')
    .addColumn('users_generation', 'bigint', (col) => col.notNull())
    .addColumn('body', 'text', (col) => col.notNull())
    .addColumn('created_at_ms', 'bigint', (col) => col.notNull())
    .addColumn('expires_at_ms', 'bigint', (col) => col.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['caller', 'idem_key'])
    .execute();
  await db.schema
    .createIndex('idempotency_keys_expires_idx')
    .ifNotExists()
    .on('idempotency_keys')
    .column('expires_at_ms')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').ifExists().execute();
}
