import type { FastifyBaseLogger } from 'fastify';

type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = Parameters<FastifyBaseLogger['child']>[1];
type LogArguments = Parameters<FastifyBaseLogger['info']>;

/** A request logger that becomes `logger.child(bindings)` the first time it is used. */
export class LazyChildLogger implements FastifyBaseLogger {
  #child: FastifyBaseLogger | undefined;
  readonly silent: FastifyBaseLogger['silent'];

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildOptions,
  ) {
    this.silent = parent.silent;
  }

  #real(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.#real().level;
  }
  set level(level: string) {
    this.#real().level = level;
  }
  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
  fatal(...args: LogArguments) {
    this.#real().fatal(...args);
  }
  error(...args: LogArguments) {
    this.#real().error(...args);
  }
  warn(...args: LogArguments) {
    this.#real().warn(...args);
  }
  info(...args: LogArguments) {
    this.#real().info(...args);
  }
  debug(...args: LogArguments) {
    this.#real().debug(...args);
  }
  trace(...args: LogArguments) {
    this.#real().trace(...args);
  }
}
