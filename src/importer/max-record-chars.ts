/**
 * Far longer than any valid record or NDJSON line (five fields of at most 255 characters, even
 * quoted or escaped). Without a bound, a file with no line break or an unclosed quote would be
 * kept whole and rescanned with every chunk: a 256 MB one took 91 s and 2.4 GB.
 */
export const MAX_RECORD_CHARS = 64 * 1024;
