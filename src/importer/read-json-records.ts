import { jsonParser, type Token } from 'stream-json/core/parser.js';
import { AppError } from '../errors.js';
import { MAX_RECORD_CHARS } from './max-record-chars.js';
import { notAUserObject, recordFromJsonEntries, type SourceRecord } from './source-record.js';

const EXPECTED = 'expected a JSON array of user objects';

/**
 * Text handed to the tokenizer at a time. It tokenizes all it is given before returning (its own
 * stack grows with the nesting), so this bounds what one call can build before the limits below
 * are checked.
 */
const PIECE_CHARS = 64 * 1024;

/**
 * Streams a top-level JSON array of user objects into batches of records, one batch per input
 * chunk; `item N` is the array position from 1. Items are built here from the tokenizer's
 * tokens, with strings in pieces, so nothing is assembled whole before it is checked: an item
 * nested deeper than a user object (an object or array inside an item) or longer than
 * MAX_RECORD_CHARS stops the import as soon as it is seen.
 */
export async function* readJsonRecords(
  text: AsyncIterable<string>,
): AsyncGenerator<SourceRecord[]> {
  const tokenize = jsonParser({ packValues: false, streamValues: true });
  const items = new JsonItems();
  for await (const chunk of text) {
    for (let at = 0; at < chunk.length; at += PIECE_CHARS) {
      let tokens;
      try {
        tokens = tokenize(chunk.length <= PIECE_CHARS ? chunk : chunk.slice(at, at + PIECE_CHARS));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new AppError('ERR_IMPORT_BAD_FILE', `invalid JSON: ${reason}; ${EXPECTED}`, {
          cause: error,
        });
      }
      // The tokenizer answers a symbol when a piece completes no token.
      if (typeof tokens !== 'symbol') items.read(tokens.values);
    }
    const records = items.take();
    if (records.length > 0) yield records;
  }
  items.end();
}

/** What an item is, once its first token is seen. */
type ItemKind = 'object' | 'array' | 'scalar';

/** Turns the tokens of the top-level array into records, item by item. */
class JsonItems {
  /** 0: before or after the top-level array; 1: inside it; 2: inside an item. */
  private depth = 0;
  private started = false;
  private ended = false;
  private items = 0;
  private inItem = false;
  private kind: ItemKind = 'scalar';
  private itemChars = 0;
  private entries: [string, string | null][] = [];
  private key = '';
  private text = '';
  private records: SourceRecord[] = [];

  read(tokens: readonly Token[]): void {
    for (const token of tokens) {
      if (this.depth === 0) {
        if (token.name !== 'startArray') {
          throw new AppError(
            'ERR_IMPORT_BAD_FILE',
            `invalid JSON: the top-level value is not an array; ${EXPECTED}`,
          );
        }
        this.depth = 1;
        this.started = true;
        continue;
      }
      if (!this.inItem) {
        if (this.depth === 1 && token.name === 'endArray') {
          this.depth = 0;
          this.ended = true;
          continue;
        }
        this.items += 1;
        this.inItem = true;
        this.kind = 'scalar';
        this.itemChars = 0;
      }
      // Every token stands for at least a character of the item's text; chunks for their own.
      this.itemChars +=
        token.name === 'stringChunk' || token.name === 'numberChunk' ? token.value.length : 1;
      if (this.itemChars > MAX_RECORD_CHARS) {
        throw this.refused(
          `longer than ${MAX_RECORD_CHARS} characters: a user object is far smaller`,
        );
      }
      switch (token.name) {
        case 'startObject':
        case 'startArray':
          if (this.depth === 2) {
            throw this.refused('nested deeper than a user object, a flat object of five strings');
          }
          this.depth = 2;
          this.kind = token.name === 'startObject' ? 'object' : 'array';
          this.entries = [];
          break;
        case 'endObject':
        case 'endArray':
          this.depth = 1;
          this.finish();
          break;
        case 'startKey':
        case 'startString':
          this.text = '';
          break;
        case 'stringChunk':
          this.text += token.value;
          break;
        case 'endKey':
          this.key = this.text;
          break;
        case 'endString':
          this.value(this.text);
          break;
        case 'endNumber':
        case 'nullValue':
        case 'trueValue':
        case 'falseValue':
          // Only strings are kept: any other value is reported by its key as not a string.
          this.value(null);
          break;
        case 'startNumber':
        case 'numberChunk':
          // Counted above; the value is recorded at endNumber.
          break;
        case 'keyValue':
        case 'stringValue':
        case 'numberValue':
        case 'whitespace':
          // Not emitted with packValues off; whitespace only by the JSONC tokenizer.
          break;
      }
    }
  }

  /** The records completed since the last call. */
  take(): SourceRecord[] {
    const records = this.records;
    this.records = [];
    return records;
  }

  /** Checks that the text ended where an array may end. */
  end(): void {
    if (this.ended) return;
    const reason = !this.started
      ? 'the file holds no JSON value'
      : this.inItem
        ? `the file ends inside item ${this.items}`
        : 'the file ends before the array is closed';
    throw new AppError('ERR_IMPORT_BAD_FILE', `invalid JSON: ${reason}; ${EXPECTED}`);
  }

  private value(value: string | null): void {
    if (this.depth === 1) this.finish();
    else if (this.kind === 'object') this.entries.push([this.key, value]);
  }

  private finish(): void {
    const location = `item ${this.items}`;
    this.records.push(
      this.kind === 'object'
        ? recordFromJsonEntries(this.entries, location)
        : notAUserObject(location),
    );
    this.inItem = false;
    this.entries = [];
  }

  private refused(reason: string): AppError {
    return new AppError('ERR_IMPORT_BAD_FILE', `item ${this.items}: ${reason}`);
  }
}
