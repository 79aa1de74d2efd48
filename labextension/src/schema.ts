/**
 * Build typed records from untrusted JSON, and apply the schema version rule.
 *
 * A record arrives from a kernel output or a file, written by any lmrepl version, or
 * by hand. Every field is read with a fallback (the defaults of `lmrepl/records.py`),
 * so the renderer never meets a wrong type and never throws on odd input.
 */

import {
  CandidateRecord,
  CellRecord,
  Cluster,
  READABLE_VERSIONS,
  RunRecord,
  SearchRecord,
  StepRecord,
  SubcallRecord
} from './types.js';

/** A JSON object, as far as we know. */
export type JsonObject = { [key: string]: unknown };

/** Child runs nest; deeper than this is cut (a hostile file must not blow the stack). */
const MAX_DEPTH = 32;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

export function optStr(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

export function num(value: unknown, fallback = 0): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

export function optNum(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function optBool(value: unknown): boolean | null {
  return typeof value === 'boolean' ? value : null;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function ints(value: unknown): number[] {
  return list(value).filter(
    (v): v is number => typeof v === 'number' && Number.isInteger(v)
  );
}

function strings(value: unknown): string[] {
  return list(value).filter((v): v is string => typeof v === 'string');
}

function objects(value: unknown): JsonObject[] {
  return list(value).filter(isObject);
}

export function readCell(raw: JsonObject): CellRecord {
  return {
    code: str(raw.code),
    output: str(raw.output),
    status: str(raw.status, 'ok'),
    duration: num(raw.duration),
    notice: optStr(raw.notice)
  };
}

export function readStep(raw: JsonObject): StepRecord {
  return {
    iteration: num(raw.iteration),
    reply: str(raw.reply),
    code: str(raw.code),
    output: str(raw.output),
    confidence: optNum(raw.confidence),
    cells: objects(raw.cells).map(readCell),
    submitted: raw.submitted === true,
    answer: optStr(raw.answer),
    notices: strings(raw.notices),
    duration: num(raw.duration)
  };
}

export function readSubcall(raw: JsonObject): SubcallRecord {
  return {
    function: str(raw.function, 'llm_query'),
    model: str(raw.model),
    prompt: str(raw.prompt),
    response: str(raw.response),
    duration: num(raw.duration),
    error: optStr(raw.error),
    child_run_id: optStr(raw.child_run_id),
    batch_index: optNum(raw.batch_index),
    depth: num(raw.depth)
  };
}

export function readRun(raw: JsonObject, level = 0): RunRecord {
  return {
    run_id: str(raw.run_id),
    parent_run_id: optStr(raw.parent_run_id),
    depth: num(raw.depth),
    question: str(raw.question),
    status: str(raw.status, 'queued'),
    stop_reason: optStr(raw.stop_reason),
    answer: optStr(raw.answer),
    error: optStr(raw.error),
    grounded: optBool(raw.grounded),
    steps: objects(raw.steps).map(readStep),
    // Schema 1 stored counts (integers) here; `list` drops them.
    subcalls: objects(raw.subcalls).map(readSubcall),
    children:
      level < MAX_DEPTH
        ? objects(raw.children).map(c => readRun(c, level + 1))
        : [],
    iterations: num(raw.iterations),
    execution_time: num(raw.execution_time),
    length: num(raw.length),
    model_calls: num(raw.model_calls),
    input_tokens: num(raw.input_tokens),
    output_tokens: num(raw.output_tokens),
    cost: num(raw.cost),
    started_at: optNum(raw.started_at),
    finished_at: optNum(raw.finished_at)
  };
}

export function readCandidate(raw: JsonObject, position: number): CandidateRecord {
  return {
    ...readRun(raw),
    index: num(raw.index, position),
    cluster: optNum(raw.cluster),
    vc: optNum(raw.vc),
    score: optNum(raw.score)
  };
}

export function newCandidate(index: number): CandidateRecord {
  return readCandidate({ index }, index);
}

function readCluster(raw: JsonObject): Cluster {
  const members = ints(raw.members);
  return {
    answer: str(raw.answer),
    members,
    votes: num(raw.votes, members.length),
    normalized: str(raw.normalized)
  };
}

/** The fields of a search record, without the version check (see `readRecord`). */
export function readSearch(raw: JsonObject): SearchRecord {
  return {
    schema_version: str(raw.schema_version, '2'),
    kind: str(raw.kind, 'srlm'),
    mode: optStr(raw.mode),
    question: str(raw.question),
    context_info: optStr(raw.context_info),
    status: str(raw.status, 'running'),
    stop_reason: optStr(raw.stop_reason),
    error: optStr(raw.error),
    answer: optStr(raw.answer),
    winner: optNum(raw.winner),
    survivors: ints(raw.survivors),
    selection_reason: optStr(raw.selection_reason),
    backend: optStr(raw.backend),
    model: optStr(raw.model),
    environment: optStr(raw.environment),
    sandbox: optStr(raw.sandbox),
    n_candidates: num(raw.n_candidates, 1),
    candidate_parallel: num(raw.candidate_parallel, 1),
    started_at: optNum(raw.started_at),
    finished_at: optNum(raw.finished_at),
    execution_time: optNum(raw.execution_time),
    model_calls: num(raw.model_calls),
    input_tokens: num(raw.input_tokens),
    output_tokens: num(raw.output_tokens),
    cost: num(raw.cost),
    clusters: objects(raw.clusters).map(readCluster),
    candidates: objects(raw.candidates).map(readCandidate)
  };
}

/** An empty record, as `SearchRecord()` in Python (what folding a log starts from). */
export function newSearch(): SearchRecord {
  return readSearch({ kind: 'rlm', n_candidates: 1 });
}

/** The notice for a record of a schema version this viewer does not know. */
export function versionNotice(version: unknown): string {
  const shown =
    typeof version === 'string' || typeof version === 'number'
      ? String(version)
      : version === undefined
        ? '(none)'
        : JSON.stringify(version);
  return (
    `This trajectory uses schema version ${shown}; this viewer reads ` +
    `${READABLE_VERSIONS.join(' and ')} — update lmrepl (and its JupyterLab extension).`
  );
}

export type ReadResult =
  | { record: SearchRecord; notice: null }
  | { record: null; notice: string };

/**
 * Read `data` as a search record under the documented version rule: versions "1"
 * and "2" are read (1 lacks the sub-call and child lists), any other is refused
 * with a notice naming it.
 */
export function readRecord(data: unknown): ReadResult {
  if (!isObject(data)) {
    return {
      record: null,
      notice: 'This is not an lmrepl trajectory record (expected a JSON object).'
    };
  }
  const version = data.schema_version;
  if (typeof version !== 'string' || !READABLE_VERSIONS.includes(version)) {
    return { record: null, notice: versionNotice(version) };
  }
  return { record: readSearch(data), notice: null };
}
