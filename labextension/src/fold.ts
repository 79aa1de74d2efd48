/**
 * Read a trajectory file: a saved record (JSON) or an `RLMLogger` event log (JSONL).
 *
 * This module tells the two apart and reports what it could not read (empty files,
 * malformed or cut-off lines); folding a log's events into a record is `LogFolder`'s
 * job (./folder.ts), re-exported here.
 */

import { asEvent, foldEvents, LogEvent } from './folder.js';
import { isObject, readRecord } from './schema.js';
import { ParseResult } from './types.js';

export { foldEvents, LogFolder } from './folder.js';
export type { LogEvent } from './folder.js';

/** Read `text` as a record or a log; never throws. */
export function parseTrajectoryText(text: string): ParseResult {
  if (!text.trim()) {
    return { record: null, notices: ['The file is empty.'] };
  }
  let whole: unknown;
  let wholeError = '';
  try {
    whole = JSON.parse(text);
  } catch (err) {
    wholeError = err instanceof Error ? err.message : String(err);
  }
  if (isObject(whole) && !asEvent(whole)) {
    if ('schema_version' in whole) {
      const read = readRecord(whole);
      return read.record
        ? { record: read.record, notices: [] }
        : { record: null, notices: [read.notice] };
    }
    return { record: null, notices: [neither('a JSON object without "schema_version"')] };
  }
  if (whole !== undefined && !isObject(whole)) {
    return { record: null, notices: [neither('JSON, but not an object')] };
  }
  return foldText(text, wholeError);
}

function neither(what: string): string {
  return (
    `This file is neither an lmrepl trajectory (a JSON record with "schema_version") ` +
    `nor an RLMLogger event log (JSON lines): it is ${what}.`
  );
}

function foldText(text: string, wholeError: string): ParseResult {
  const lines = text.split(/\r?\n/);
  while (lines.length && !lines[lines.length - 1]!.trim()) {
    lines.pop();
  }
  const events: LogEvent[] = [];
  const bad: number[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) {
      return;
    }
    let event: LogEvent | null = null;
    try {
      event = asEvent(JSON.parse(line));
    } catch {
      event = null;
    }
    if (event) {
      events.push(event);
    } else {
      bad.push(i + 1);
    }
  });
  if (!events.length) {
    const why = wholeError ? `not valid JSON (${wholeError})` : 'no lmrepl events';
    return { record: null, notices: [neither(why)] };
  }
  const notices: string[] = [];
  const lastLine = lines.length;
  const cutOff = bad.length > 0 && bad[bad.length - 1] === lastLine;
  const skipped = cutOff ? bad.slice(0, -1) : bad;
  if (skipped.length) {
    notices.push(
      `Skipped ${skipped.length} malformed line${skipped.length > 1 ? 's' : ''} ` +
        `(not lmrepl events): ${lineList(skipped)}.`
    );
  }
  if (cutOff) {
    notices.push(
      `The last line (${lastLine}) is cut off: the log was still being written, ` +
        'or the run ended abruptly.'
    );
  }
  // A final record whose version we cannot read: say so rather than guess.
  for (const event of events) {
    if (event.kind === 'search_finished' && isObject(event.record)) {
      const read = readRecord(event.record);
      if (!read.record) {
        return { record: null, notices: [...notices, read.notice] };
      }
    }
  }
  const folded = foldEvents(events);
  return { record: folded.record, notices: [...notices, ...folded.notices] };
}

/** `1, 2, 5-9` */
function lineList(numbers: number[]): string {
  const parts: string[] = [];
  let start = numbers[0]!;
  let prev = start;
  for (const n of [...numbers.slice(1), NaN]) {
    if (n === prev + 1) {
      prev = n;
      continue;
    }
    parts.push(start === prev ? String(start) : `${start}-${prev}`);
    start = prev = n;
  }
  return parts.length > 10 ? `${parts.slice(0, 10).join(', ')}, …` : parts.join(', ');
}
