import { CONFIG_SCHEMA, type ConfigVariableName } from './config-schema.js';

/** The raw values of the variables in the config schema; empty strings count as unset. */
export type RawEnv = Partial<Record<ConfigVariableName, string>>;

/** The only place that reads `process.env`. */
export function readEnv(source: NodeJS.ProcessEnv = process.env): RawEnv {
  const raw: RawEnv = {};
  for (const name of Object.keys(CONFIG_SCHEMA) as ConfigVariableName[]) {
    const value = source[name];
    if (value !== undefined && value !== '') raw[name] = value;
  }
  return raw;
}
