import type { Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on the schema types of later code.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'integer', (col) => col.primaryKey().autoIncrement())
    .addColumn('name', 'varchar(255)', (col) => col.notNull())
    .addColumn('street', 'varchar(255)', (col) => col.notNull())
    .addColumn('city', 'varchar(255)', (col) => col.notNull())
    .addColumn('state', 'varchar(2)', (col) => col.notNull())
    .addColumn('user_date', 'varchar(8)', (col) => col.notNull())
    .execute();

  await db.schema
    .createTable('data_state')
    .addColumn('id', 'integer', (col) => col.primaryKey())
    .addColumn('data_version', 'bigint', (col) => col.notNull())
    .execute();
  await db
    .insertInto('data_state' as never)
    .values({ id: 1, data_version: 0 })
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('data_state').execute();
  await db.schema.dropTable('users').execute();
}
