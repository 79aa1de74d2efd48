/**
 * Typed view of a search record (`application/vnd.lmrepl.trajectory+json`).
 *
 * These mirror the pydantic models in `lmrepl/records.py` (schema version "2",
 * docs/trajectory-schema.md). The data comes from files and kernel outputs, so it is
 * never trusted to match: `schema.ts` builds these objects field by field from
 * whatever JSON arrives, and everything downstream can rely on the types.
 */

/** The media type of a trajectory record in a MIME bundle. */
export const MIME_TYPE = 'application/vnd.lmrepl.trajectory+json';

/** Schema versions this viewer reads ("1" is upgraded on read). */
export const READABLE_VERSIONS: readonly string[] = ['1', '2'];

export type RunStatus =
  | 'queued'
  | 'running'
  | 'done'
  | 'no_answer'
  | 'failed'
  | 'cancelled'
  | 'stopped'
  | string;

export interface CellRecord {
  code: string;
  output: string;
  /** ok, error, timeout, restarted, died, cancelled or refused. */
  status: string;
  duration: number;
  notice: string | null;
}

export interface StepRecord {
  iteration: number;
  reply: string;
  code: string;
  output: string;
  confidence: number | null;
  cells: CellRecord[];
  submitted: boolean;
  answer: string | null;
  notices: string[];
  duration: number;
}

export interface SubcallRecord {
  function: string;
  model: string;
  prompt: string;
  response: string;
  duration: number;
  error: string | null;
  child_run_id: string | null;
  batch_index: number | null;
  depth: number;
}

export interface UsageTotals {
  model_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost: number;
}

export interface RunRecord extends UsageTotals {
  run_id: string;
  parent_run_id: string | null;
  depth: number;
  question: string;
  status: RunStatus;
  /** Why it ended: answered, max_iterations, stuck, limit, cancelled, failed; null while running. */
  stop_reason: string | null;
  answer: string | null;
  error: string | null;
  grounded: boolean | null;
  steps: StepRecord[];
  subcalls: SubcallRecord[];
  children: RunRecord[];
  iterations: number;
  execution_time: number;
  length: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface CandidateRecord extends RunRecord {
  index: number;
  cluster: number | null;
  vc: number | null;
  score: number | null;
}

export interface Cluster {
  answer: string;
  members: number[];
  votes: number;
  normalized: string;
}

export interface SearchRecord extends UsageTotals {
  schema_version: string;
  kind: 'srlm' | 'rlm' | string;
  mode: 'direct' | 'rlm' | string | null;
  question: string;
  context_info: string | null;
  status: 'running' | 'done' | 'failed' | 'cancelled' | 'stopped' | string;
  stop_reason: string | null;
  error: string | null;
  answer: string | null;
  winner: number | null;
  survivors: number[];
  selection_reason: string | null;
  backend: string | null;
  model: string | null;
  environment: string | null;
  sandbox: string | null;
  n_candidates: number;
  candidate_parallel: number;
  started_at: number | null;
  finished_at: number | null;
  execution_time: number | null;
  clusters: Cluster[];
  candidates: CandidateRecord[];
}

/** What reading a file gives: a record to show (or none) and notices about it. */
export interface ParseResult {
  record: SearchRecord | null;
  notices: string[];
}
