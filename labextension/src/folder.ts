/**
 * Fold an `RLMLogger` event log into a record: the `LogFolder` reducer, a port of
 * `lmrepl/live.py`'s `LiveState.apply`, so a log that is still being written (or was
 * cut off) shows what happened so far, and a finished one shows the record the engine
 * returned (its `search_finished` event carries it; `candidate_finished` carries each
 * candidate's final record).
 */

import {
  isObject,
  JsonObject,
  newCandidate,
  newSearch,
  num,
  optNum,
  optStr,
  readCandidate,
  readRecord,
  readRun,
  readStep,
  readSubcall,
  str
} from './schema.js';
import { CandidateRecord, RunRecord, SearchRecord } from './types.js';

/** One line of a log: the fields every event has, plus its own (read on use). */
export interface LogEvent extends JsonObject {
  kind: string;
  run_id: string;
  depth: number;
  candidate: number | null;
  time: number;
}

/** `value` as an event, or null when it lacks the fields every event has. */
export function asEvent(value: unknown): LogEvent | null {
  if (!isObject(value) || typeof value.kind !== 'string' || typeof value.run_id !== 'string') {
    return null;
  }
  return {
    ...value,
    kind: value.kind,
    run_id: value.run_id,
    depth: num(value.depth),
    candidate: optNum(value.candidate),
    time: num(value.time)
  };
}

/** Fold a list of events (already parsed) into a record. */
export function foldEvents(events: LogEvent[]): { record: SearchRecord; notices: string[] } {
  const folder = new LogFolder();
  for (const event of events) {
    folder.apply(event);
  }
  return folder.finish();
}

/**
 * The reducer: a port of `LiveState.apply` (lmrepl/live.py), keeping only what a
 * record holds (not the live-only state such as the code running now).
 */
export class LogFolder {
  record: SearchRecord = newSearch();
  private kindKnown = false;
  private sawSearch = false;
  private readonly runs = new Map<string, RunRecord>();
  private readonly indexOfRun = new Map<string, number>();
  private readonly parentOf = new Map<string, string>();
  /** Candidates that events named (a per-candidate log names one). */
  private readonly named = new Set<number>();

  apply(event: LogEvent): void {
    const rec = this.record;
    if (rec.started_at === null) {
      rec.started_at = event.time;
    }
    if (event.candidate !== null) {
      this.named.add(event.candidate);
    }
    switch (event.kind) {
      case 'search_started':
        this.searchStarted(event);
        break;
      case 'search_finished':
        this.replace(event.record);
        break;
      case 'run_started':
        this.runStarted(event);
        break;
      case 'model_call_started':
        break;
      case 'model_call_finished':
        this.modelCall(event);
        break;
      default:
        this.candidateEvent(event);
    }
  }

  /**
   * The record, and notices about the fold. A per-candidate log (`*_candN.jsonl`)
   * names one candidate and no search: show that candidate alone, not N empty
   * placeholders before it.
   */
  finish(): { record: SearchRecord; notices: string[] } {
    const rec = this.record;
    if (this.sawSearch || this.named.size !== 1) {
      return { record: rec, notices: [] };
    }
    const [index] = [...this.named];
    rec.candidates = rec.candidates.filter(c => c.index === index);
    rec.n_candidates = rec.candidates.length;
    const cand = rec.candidates[0];
    if (cand && cand.status !== 'running' && cand.status !== 'queued') {
      // The candidate's own verdict (candidate_finished), not its run's.
      rec.status = cand.status;
      rec.answer = cand.answer;
      rec.error = cand.error;
      rec.winner = cand.answer !== null ? cand.index : null;
    }
    return {
      record: rec,
      notices: [
        `This log holds the events of candidate ${index} only (a per-candidate log of an ` +
          'SRLM search); the search itself is in the main log.'
      ]
    };
  }

  private candidateEvent(event: LogEvent): void {
    const idx = this.index(event);
    if (idx === undefined) {
      return;
    }
    const run = this.runs.get(event.run_id);
    switch (event.kind) {
      case 'candidate_queued':
        this.cand(idx).status = 'queued';
        break;
      case 'candidate_finished':
        this.candidateFinished(event, idx);
        break;
      case 'subcall_finished':
        this.cand(idx);
        if (run && isObject(event.subcall)) {
          run.subcalls.push(readSubcall(event.subcall));
        }
        break;
      case 'iteration_finished':
        this.cand(idx);
        if (run && isObject(event.step)) {
          run.steps.push(readStep(event.step));
        }
        break;
      case 'run_finished':
        this.runFinished(event, idx, run);
        break;
      default:
        // iteration_started, cell_*, subcall_started: only live state in LiveState.
        if (event.depth === 0) {
          this.cand(idx);
        }
    }
  }

  private index(event: LogEvent): number | undefined {
    if (event.candidate !== null) {
      return event.candidate;
    }
    return this.indexOfRun.get(event.run_id);
  }

  private cand(index: number): CandidateRecord {
    const cands = this.record.candidates;
    while (cands.length <= index) {
      cands.push(newCandidate(cands.length));
    }
    return cands[index]!;
  }

  private searchStarted(event: LogEvent): void {
    const rec = this.record;
    this.kindKnown = true;
    this.sawSearch = true;
    rec.kind = 'srlm';
    rec.mode = optStr(event.mode);
    rec.status = 'running';
    rec.question = rec.question || str(event.question);
    rec.n_candidates = num(event.n_candidates, 1);
    rec.candidate_parallel = num(event.candidate_parallel, 1);
    const count = rec.mode === 'rlm' ? rec.n_candidates : 1;
    // A hostile K must not allocate millions of columns.
    for (let i = 0; i < Math.min(count, 1000); i++) {
      this.cand(i);
    }
  }

  private runStarted(event: LogEvent): void {
    const rec = this.record;
    const parent = this.runs.get(str(event.parent_run_id));
    if (event.depth > 0 && parent) {
      const child = readRun({
        run_id: event.run_id,
        parent_run_id: event.parent_run_id,
        depth: event.depth,
        question: event.question,
        status: 'running',
        started_at: event.time
      });
      parent.children.push(child);
      this.runs.set(event.run_id, child);
      this.parentOf.set(event.run_id, parent.run_id);
      const index = this.indexOfRun.get(parent.run_id) ?? event.candidate;
      if (index !== null && index !== undefined) {
        this.indexOfRun.set(event.run_id, index);
      }
      return;
    }
    if (event.depth > 0) {
      return; // a child whose parent we never saw
    }
    let index: number;
    if (event.candidate !== null) {
      index = event.candidate;
    } else {
      if (!this.kindKnown) {
        this.kindKnown = true;
        rec.kind = 'rlm';
        rec.mode = 'rlm';
      }
      index = this.indexOfRun.size;
    }
    const cand = this.cand(index);
    cand.run_id = event.run_id;
    cand.question = str(event.question);
    cand.status = 'running';
    cand.started_at = event.time;
    this.runs.set(event.run_id, cand);
    this.indexOfRun.set(event.run_id, index);
    rec.question = rec.question || str(event.question);
    rec.context_info = rec.context_info ?? optStr(event.context_info);
    rec.backend = rec.backend ?? optStr(event.backend);
    rec.model = rec.model ?? optStr(event.model);
    rec.environment = rec.environment ?? optStr(event.environment);
    rec.sandbox = rec.sandbox ?? optStr(event.sandbox);
    if (rec.kind === 'rlm') {
      rec.status = 'running';
      rec.n_candidates = Math.max(rec.n_candidates, index + 1);
    }
  }

  private modelCall(event: LogEvent): void {
    if (optStr(event.error) !== null) {
      return; // usage counts the calls that returned, as the engine's tracker does
    }
    const rec = this.record;
    const inTokens = num(event.input_tokens);
    const outTokens = num(event.output_tokens);
    const cost = num(event.cost);
    rec.model_calls += 1;
    rec.input_tokens += inTokens;
    rec.output_tokens += outTokens;
    rec.cost += cost;
    if (rec.model === null && event.depth === 0) {
      rec.model = optStr(event.model);
    }
    // Every trajectory counts the calls of its children, as the engine's usage does.
    const chain: RunRecord[] = [];
    let runId: string | undefined = event.run_id;
    const seen = new Set<string>();
    while (runId !== undefined && this.runs.has(runId) && !seen.has(runId)) {
      seen.add(runId);
      chain.push(this.runs.get(runId)!);
      runId = this.parentOf.get(runId);
    }
    if (!chain.length && event.candidate !== null) {
      chain.push(this.cand(event.candidate)); // a direct answer has no run_started
    }
    for (const run of chain) {
      run.model_calls += 1;
      run.input_tokens += inTokens;
      run.output_tokens += outTokens;
      run.cost += cost;
    }
  }

  private runFinished(event: LogEvent, idx: number, run: RunRecord | undefined): void {
    this.cand(idx);
    if (!run) {
      return;
    }
    const answer = optStr(event.answer);
    const error = optStr(event.error);
    const status = str(event.status, 'done');
    run.finished_at = event.time;
    run.answer = answer ?? run.answer;
    run.grounded = typeof event.grounded === 'boolean' ? event.grounded : run.grounded;
    run.stop_reason = optStr(event.stop_reason) ?? run.stop_reason;
    run.error = error || run.error;
    run.execution_time = num(event.execution_time);
    run.iterations = Math.max(run.iterations, num(event.iterations));
    if (event.depth > 0) {
      run.status = status;
      return;
    }
    const rec = this.record;
    if (rec.kind === 'rlm') {
      run.status = status;
      run.length = run.length || num(event.output_tokens);
      rec.status = status;
      rec.stop_reason = run.stop_reason;
      rec.answer = answer;
      rec.error = error;
      rec.winner = answer !== null ? idx : null;
      rec.finished_at = event.time;
      rec.execution_time =
        num(event.execution_time) || (rec.started_at !== null ? event.time - rec.started_at : 0);
    }
    // In a search the candidate's verdict comes with candidate_finished.
  }

  private candidateFinished(event: LogEvent, idx: number): void {
    this.cand(idx);
    if (!isObject(event.record)) {
      return;
    }
    const cand = readCandidate(event.record, idx);
    this.record.candidates[idx] = cand;
    this.reindex(cand, cand.index);
  }

  private replace(data: unknown): void {
    const read = readRecord(data);
    if (!read.record) {
      return; // parseTrajectoryText reports it
    }
    this.record = read.record;
    this.kindKnown = true;
    this.sawSearch = true;
    this.runs.clear();
    for (const cand of this.record.candidates) {
      this.reindex(cand, cand.index);
    }
  }

  private reindex(run: RunRecord, index: number, level = 0): void {
    if (run.run_id) {
      this.runs.set(run.run_id, run);
      this.indexOfRun.set(run.run_id, index);
    }
    if (level > 32) {
      return;
    }
    for (const child of run.children) {
      this.parentOf.set(child.run_id, run.run_id);
      this.reindex(child, index, level + 1);
    }
  }
}
