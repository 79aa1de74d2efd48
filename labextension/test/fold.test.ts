import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseTrajectoryText } from '../src/fold.js';
import { renderResult } from '../src/render.js';
import { readRecord } from '../src/schema.js';
import { RunRecord, SearchRecord } from '../src/types.js';
import { all, fixtureText, newDocument, one } from './helpers.js';

function engineRecord(name: string): SearchRecord {
  const read = readRecord(JSON.parse(fixtureText(name)));
  assert.ok(read.record);
  return read.record;
}

function logLines(name: string): string[] {
  return fixtureText(name).split('\n').filter(line => line.trim());
}

function kindOf(line: string): string {
  return (JSON.parse(line) as { kind: string }).kind;
}

function fold(text: string): { record: SearchRecord; notices: string[] } {
  const result = parseTrajectoryText(text);
  assert.ok(result.record, result.notices.join('\n'));
  return { record: result.record, notices: result.notices };
}

function subcallCount(run: RunRecord): number {
  return run.subcalls.length + run.children.reduce((n, c) => n + subcallCount(c), 0);
}

/** The shape the Python engine's record and a folded log must agree on. */
function runShape(run: RunRecord): unknown {
  return {
    status: run.status,
    answer: run.answer,
    steps: run.steps.length,
    iterations: run.steps.map(s => s.iteration),
    submitted: run.steps.map(s => s.submitted),
    subcalls: run.subcalls.map(s => s.function),
    allSubcalls: subcallCount(run),
    children: run.children.map(runShape)
  };
}

function agrees(folded: SearchRecord, engine: SearchRecord, withVerdict = true): void {
  if (withVerdict) {
    assert.equal(folded.status, engine.status);
    assert.equal(folded.answer, engine.answer);
    assert.equal(folded.winner, engine.winner);
  }
  assert.equal(folded.kind, engine.kind);
  assert.equal(folded.mode, engine.mode);
  assert.equal(folded.question, engine.question);
  assert.equal(folded.candidates.length, engine.candidates.length);
  assert.deepEqual(
    folded.candidates.map(c => c.index),
    engine.candidates.map(c => c.index)
  );
  assert.deepEqual(folded.candidates.map(runShape), engine.candidates.map(runShape));
}

describe('saved records', () => {
  for (const name of ['srlm_search', 'rlm_run', 'srlm_direct']) {
    it(`reads ${name}.record.json as JSON`, () => {
      const { record, notices } = fold(fixtureText(`${name}.record.json`));
      assert.deepEqual(notices, []);
      assert.deepEqual(record, engineRecord(`${name}.record.json`));
    });
  }

  it('reads schema 1 and refuses other versions with a notice', () => {
    assert.equal(fold(fixtureText('schema1_record.json')).record.schema_version, '1');
    const v9 = JSON.stringify({ ...JSON.parse(fixtureText('rlm_run.record.json')), schema_version: '9' });
    const result = parseTrajectoryText(v9);
    assert.equal(result.record, null);
    assert.match(result.notices[0]!, /schema version 9; this viewer reads 1 and 2/);
  });
});

describe('JSONL logs agree with the records the engine returned', () => {
  for (const name of ['srlm_search', 'rlm_run', 'srlm_direct']) {
    it(name, () => {
      const { record, notices } = fold(fixtureText(`${name}.jsonl`));
      assert.deepEqual(notices, []);
      const engine = engineRecord(`${name}.record.json`);
      agrees(record, engine);
      assert.equal(record.n_candidates, engine.n_candidates);
      assert.equal(record.model_calls, engine.model_calls);
      assert.equal(record.input_tokens, engine.input_tokens);
      assert.equal(record.output_tokens, engine.output_tokens);
    });
  }

  it('srlm_search without its search_finished line (the fold of candidate_finished)', () => {
    const lines = logLines('srlm_search.jsonl').filter(l => kindOf(l) !== 'search_finished');
    const { record } = fold(lines.join('\n'));
    const engine = engineRecord('srlm_search.record.json');
    agrees(record, engine, false);
    assert.equal(record.status, 'running');
    assert.deepEqual(
      record.candidates.map(c => c.status),
      ['done', 'done', 'failed']
    );
    assert.equal(record.model_calls, engine.model_calls);
  });

  it('srlm_search from the raw events alone (no final records at all)', () => {
    const lines = logLines('srlm_search.jsonl').filter(
      l => !['search_finished', 'candidate_finished'].includes(kindOf(l))
    );
    const { record } = fold(lines.join('\n'));
    const engine = engineRecord('srlm_search.record.json');
    assert.equal(record.kind, 'srlm');
    assert.equal(record.candidates.length, 3);
    // Steps, sub-calls and child runs come from their own events.
    assert.deepEqual(
      record.candidates.map(c => [c.steps.length, c.subcalls.length, c.children.length]),
      engine.candidates.map(c => [c.steps.length, c.subcalls.length, c.children.length])
    );
    assert.deepEqual(record.candidates[0]!.children.map(runShape), engine.candidates[0]!.children.map(runShape));
    assert.equal(record.candidates[0]!.children[0]!.parent_run_id, engine.candidates[0]!.run_id);
    assert.deepEqual(
      record.candidates.map(c => c.model_calls),
      engine.candidates.map(c => c.model_calls)
    );
    assert.equal(record.input_tokens, engine.input_tokens);
  });
});

describe('logs cut off mid-run', () => {
  it('a partial last line: what came before, status running, a notice', () => {
    const lines = logLines('srlm_search.jsonl');
    const at = lines.findIndex(l => kindOf(l) === 'run_started' && l.includes('-c1"'));
    const text = [...lines.slice(0, at + 5), lines[at + 5]!.slice(0, 40)].join('\n');
    const { record, notices } = fold(text);
    assert.equal(record.status, 'running');
    assert.equal(record.answer, null);
    assert.deepEqual(
      record.candidates.map(c => c.status),
      ['done', 'running', 'queued']
    );
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, new RegExp(`last line \\(${at + 6}\\) is cut off`));
    const root = renderResult({ record, notices }, newDocument());
    assert.equal(one(root, '.lmrepl-tr-header .lmrepl-tr-badge').textContent, 'running');
    assert.match(one(root, '.lmrepl-tr-answer').textContent ?? '', /still running/);
  });

  it('an RLM log without run_finished', () => {
    const lines = logLines('rlm_run.jsonl').filter(l => kindOf(l) !== 'run_finished');
    const { record, notices } = fold(lines.join('\n') + '\n');
    assert.deepEqual(notices, []);
    assert.equal(record.kind, 'rlm');
    assert.equal(record.status, 'running');
    assert.equal(record.candidates.length, 1);
    assert.equal(record.candidates[0]!.status, 'running');
    assert.equal(record.candidates[0]!.steps.length, 2);
    assert.equal(record.winner, null);
  });
});

describe('per-candidate logs', () => {
  function candidateLog(index: number): string {
    return logLines('srlm_search.jsonl')
      .filter(l => (JSON.parse(l) as { candidate: number | null }).candidate === index)
      .join('\n');
  }

  for (const index of [0, 1, 2]) {
    it(`_cand${index}.jsonl shows that candidate alone`, () => {
      const { record, notices } = fold(candidateLog(index));
      const engine = engineRecord('srlm_search.record.json').candidates[index]!;
      assert.equal(record.candidates.length, 1);
      const cand = record.candidates[0]!;
      assert.equal(cand.index, index);
      assert.deepEqual(runShape(cand), runShape(engine));
      assert.equal(notices.length, 1);
      assert.match(notices[0]!, new RegExp(`candidate ${index} only`));
      const root = renderResult({ record, notices }, newDocument());
      const cols = all(root, '.lmrepl-tr-candidate');
      assert.equal(cols.length, 1);
      assert.equal(cols[0]!.dataset.candidateIndex, String(index));
    });
  }
});

describe('malformed input', () => {
  it('skips bad lines and names them', () => {
    const lines = logLines('rlm_run.jsonl');
    lines.splice(2, 0, 'this is not json');
    lines.splice(6, 0, '{"neither": "an event"}', '[1, 2]');
    const { record, notices } = fold(lines.join('\n'));
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, /Skipped 3 malformed lines \(not lmrepl events\): 3, 7-8\./);
    agrees(record, engineRecord('rlm_run.record.json'));
    const root = renderResult({ record, notices }, newDocument());
    assert.match(one(root, '.lmrepl-tr-notice').textContent ?? '', /3, 7-8/);
  });

  it('says clearly when a file is neither a record nor a log', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['   \n', /empty/],
      ['hello world\nsecond line', /neither .* not valid JSON/],
      ['[1, 2, 3]', /neither .* not an object/],
      ['{"name": "package", "version": "1.0"}', /neither .* without "schema_version"/],
      ['{"schema_version": "2", "kind": "srlm"', /neither/],
      ['"just a string"', /neither/]
    ];
    for (const [text, pattern] of cases) {
      const result = parseTrajectoryText(text);
      assert.equal(result.record, null, text);
      assert.equal(result.notices.length, 1, text);
      assert.match(result.notices[0]!, pattern, text);
      const root = renderResult(result, newDocument());
      assert.equal(all(root, '.lmrepl-tr-notice').length, 1);
    }
  });

  it('survives events with wrong field types', () => {
    const events = [
      { kind: 'search_started', run_id: 's', mode: 'rlm', n_candidates: 'x', time: 'y' },
      { kind: 'run_started', run_id: 'a', candidate: 0, question: 5 },
      { kind: 'iteration_finished', run_id: 'a', candidate: 0, step: 'nope' },
      { kind: 'iteration_finished', run_id: 'a', candidate: 0, step: { cells: 3 } },
      { kind: 'subcall_finished', run_id: 'a', candidate: 0, subcall: null },
      { kind: 'run_started', run_id: 'b', depth: 1, parent_run_id: 'a', candidate: 0 },
      { kind: 'model_call_finished', run_id: 'b', depth: 1, candidate: 0, input_tokens: 'many' },
      { kind: 'candidate_finished', run_id: 'a', candidate: 0, record: [1] },
      { kind: 'search_finished', run_id: 's', record: null },
      { kind: 'unknown_kind', run_id: 'a', candidate: 0 }
    ];
    const { record } = fold(events.map(e => JSON.stringify(e)).join('\n'));
    assert.equal(record.candidates.length, 1);
    assert.equal(record.candidates[0]!.steps.length, 1);
    assert.equal(record.candidates[0]!.children.length, 1);
    renderResult({ record, notices: [] }, newDocument());
  });

  it('a search_finished record of an unknown version gives the version notice', () => {
    const lines = logLines('srlm_direct.jsonl').map(l => {
      const event = JSON.parse(l) as { kind: string; record?: { schema_version: string } };
      if (event.kind === 'search_finished' && event.record) {
        event.record.schema_version = '7';
      }
      return JSON.stringify(event);
    });
    const result = parseTrajectoryText(lines.join('\n'));
    assert.equal(result.record, null);
    assert.match(result.notices.join(' '), /schema version 7/);
  });
});
