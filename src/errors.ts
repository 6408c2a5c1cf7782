/**
 * The one registry of error codes. Once released a code is never renamed: clients and alerts
 * match on it. Each code carries its HTTP status and a short, stable title (RFC 9457).
 */
export const ERROR_CODES = {
  ERR_HTTP_BAD_REQUEST: { status: 400, title: 'Bad request' },
  ERR_HTTP_NOT_FOUND: { status: 404, title: 'Not found' },
  ERR_IDEMPOTENCY_KEY_INVALID: { status: 400, title: 'Malformed Idempotency-Key' },
  ERR_IDEMPOTENCY_KEY_IN_USE: { status: 409, title: 'Idempotency-Key in use' },
  ERR_IDEMPOTENCY_OUTCOME_GONE: { status: 410, title: "Idempotency-Key's result is gone" },
  ERR_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused' },
  ERR_USER_NOT_FOUND: { status: 404, title: 'User not found' },
  ERR_HTTP_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, title: 'Request timeout' },
  ERR_HTTP_URI_TOO_LONG: { status: 414, title: 'URI too long' },
  ERR_HTTP_PRECONDITION_FAILED: { status: 412, title: 'Precondition failed' },
  ERR_HTTP_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  ERR_HTTP_RANGE_NOT_SATISFIABLE: { status: 416, title: 'Range not satisfiable' },
  ERR_HTTP_PRECONDITION_REQUIRED: { status: 428, title: 'Precondition required' },
  ERR_HTTP_HEADERS_TOO_LARGE: { status: 431, title: 'Request header fields too large' },
  ERR_AUTH_REQUIRED: { status: 401, title: 'Admin token required' },
  ERR_AUTH_FORBIDDEN: { status: 403, title: 'Admin operation refused' },
  ERR_AUTH_METRICS_TOKEN_REQUIRED: { status: 401, title: 'Metrics token required' },
  ERR_UPLOAD_TOO_LARGE: { status: 413, title: 'Upload too large' },
  ERR_USER_INVALID: { status: 422, title: 'Invalid user' },
  ERR_IMPORT_BAD_FILE: { status: 422, title: 'Unreadable import file' },
  ERR_IMPORT_BAD_ROWS: { status: 422, title: 'Import rejected: bad rows' },
  ERR_IMPORT_NO_ROWS: { status: 422, title: 'Import file has no rows' },
  ERR_IMPORT_FILE_NOT_FOUND: { status: 422, title: 'Import file not found' },
  ERR_IMPORT_DATA_FILE_MISSING: { status: 500, title: 'Configured data file is missing' },
  ERR_BACKUP_INVALID: { status: 422, title: 'Not a valid backup' },
  ERR_BACKUP_UNSUPPORTED_VERSION: { status: 422, title: 'Backup format too new' },
  ERR_BACKUP_NOT_FOUND: { status: 404, title: 'Backup not found' },
  ERR_BACKUP_IN_PROGRESS: { status: 409, title: 'A backup is already running' },
  ERR_BACKUP_DIR_NOT_WRITABLE: { status: 500, title: 'Backup folder not writable' },
  ERR_STORAGE_FAILED: { status: 500, title: 'Server storage failed' },
  ERR_WRITE_IN_PROGRESS: { status: 409, title: 'Another write is in progress' },
  ERR_DB_UNAVAILABLE: { status: 503, title: 'Database unavailable' },
  ERR_DB_PRIMARY_UNAVAILABLE: { status: 503, title: 'Primary database unavailable' },
  ERR_DB_SPLIT_BRAIN: { status: 503, title: 'More than one database server is writable' },
  // Only the CLI meets it (the server creates its database): a 4xx, so it exits 2.
  ERR_DB_NOT_FOUND: { status: 404, title: 'Database not found' },
  ERR_DB_DATA_REJECTED: { status: 500, title: 'Database refused the data' },
  ERR_SHUTTING_DOWN: { status: 503, title: 'Server is shutting down' },
  ERR_STREAMS_BUSY: { status: 503, title: 'Too many large responses in progress' },
  ERR_STATUS_STREAMS_BUSY: { status: 503, title: 'Too many status pages open' },
  ERR_INTERNAL: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Every error a client or operator can act on. `detail` is safe to show to the client. */
export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  /** Per-item problems (bad rows), shown to the client as the problem's `errors` array. */
  readonly errors: readonly string[] | undefined;
  /** Sent as `Retry-After`: when trying again can succeed. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { cause?: unknown; errors?: readonly string[]; retryAfterSeconds?: number } = {},
  ) {
    super(detail, { cause: options.cause });
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.title = ERROR_CODES[code].title;
    this.errors = options.errors;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}
