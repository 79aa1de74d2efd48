/**
 * The top of a record's view: header (kind, status, facts, question), the final
 * answer, and the answer clusters with the survivors' scores.
 */

import {
  badge,
  count,
  dollars,
  el,
  errorBox,
  expandable,
  fact,
  fixed,
  preview,
  seconds,
  stopBadge,
  TEXT_LIMITS
} from './dom.js';
import { CandidateRecord, SearchRecord } from './types.js';

/** Statuses whose record carries an `error` worth showing. */
const ERROR_STATUSES = new Set(['failed', 'stopped', 'cancelled']);

// -- header --------------------------------------------------------------------------

export function renderHeader(record: SearchRecord, doc: Document): HTMLElement {
  const header = el(doc, 'div', 'lmrepl-tr-header');
  const title = el(doc, 'div', 'lmrepl-tr-title');
  const name = record.kind === 'srlm' ? 'SRLM search' : record.kind === 'rlm' ? 'RLM run' : record.kind;
  title.append(el(doc, 'span', 'lmrepl-tr-kind', name), badge(doc, record.status));
  const stop = stopBadge(doc, record.stop_reason, record.answer !== null);
  if (stop) {
    title.append(stop);
  }
  header.append(title);

  const facts = el(doc, 'div', 'lmrepl-tr-facts');
  facts.append(fact(doc, 'k', 'K', String(record.n_candidates)));
  if (record.candidate_parallel > 1) {
    facts.append(fact(doc, 'parallel', 'parallel', String(record.candidate_parallel)));
  }
  facts.append(fact(doc, 'mode', 'mode', record.mode ?? '—'));
  const model = record.model ?? '—';
  facts.append(fact(doc, 'model', 'model', record.backend ? `${model} (${record.backend})` : model));
  if (record.environment) {
    const env = record.sandbox ? `${record.environment}, ${record.sandbox}` : record.environment;
    facts.append(fact(doc, 'environment', 'env', env));
  }
  facts.append(
    fact(doc, 'wall', 'wall', wallTime(record)),
    fact(
      doc,
      'tokens',
      'tokens',
      `${count(record.input_tokens)} in / ${count(record.output_tokens)} out`
    ),
    fact(doc, 'calls', 'calls', count(record.model_calls)),
    fact(doc, 'cost', 'cost', dollars(record.cost))
  );
  header.append(facts);

  if (record.question) {
    const question = el(doc, 'div', 'lmrepl-tr-question');
    question.append(
      el(doc, 'div', 'lmrepl-tr-label', 'Question'),
      expandable(doc, record.question, 'lmrepl-tr-question-text', TEXT_LIMITS)
    );
    header.append(question);
  }
  if (record.context_info) {
    header.append(el(doc, 'div', 'lmrepl-tr-context', record.context_info));
  }
  return header;
}

function wallTime(record: SearchRecord): string {
  if (record.execution_time !== null) {
    return seconds(record.execution_time);
  }
  if (record.started_at !== null && record.finished_at !== null) {
    return seconds(record.finished_at - record.started_at);
  }
  return record.status === 'running' ? 'running…' : '—';
}

// -- final answer ----------------------------------------------------------------------

export function renderAnswer(record: SearchRecord, doc: Document): HTMLElement {
  const box = el(doc, 'div', 'lmrepl-tr-answer');
  box.append(el(doc, 'div', 'lmrepl-tr-label', 'Answer'));
  if (record.answer !== null) {
    box.append(expandable(doc, record.answer, 'lmrepl-tr-answer-text'));
  } else {
    box.classList.add('lmrepl-tr-no-answer');
    const why = record.status === 'running' ? 'still running…' : 'no answer';
    box.append(el(doc, 'div', 'lmrepl-tr-muted', why));
  }
  const how: string[] = [];
  if (record.winner !== null) {
    how.push(`winner: candidate ${record.winner}`);
  }
  if (record.selection_reason) {
    how.push(`selected by: ${record.selection_reason}`);
  }
  if (how.length) {
    box.append(el(doc, 'div', 'lmrepl-tr-selection', how.join(' · ')));
  }
  if (record.error && ERROR_STATUSES.has(record.status)) {
    box.append(errorBox(doc, record.status, record.error));
  }
  return box;
}

// -- clusters and scores -----------------------------------------------------------------

export function renderClusters(record: SearchRecord, doc: Document): HTMLElement | null {
  if (!record.clusters.length && !record.survivors.length) {
    return null;
  }
  const box = el(doc, 'div', 'lmrepl-tr-clusters');
  if (record.clusters.length) {
    box.append(el(doc, 'div', 'lmrepl-tr-label', 'Answer clusters'));
    const table = el(doc, 'table', 'lmrepl-tr-table lmrepl-tr-cluster-table');
    table.append(headRow(doc, ['#', 'answer', 'votes', 'candidates']));
    const body = el(doc, 'tbody');
    record.clusters.forEach((cluster, i) => {
      const row = el(doc, 'tr', 'lmrepl-tr-cluster');
      row.dataset.votes = String(cluster.votes);
      if (record.winner !== null && cluster.members.includes(record.winner)) {
        row.classList.add('lmrepl-tr-winner-row');
      }
      const answer = el(doc, 'td', 'lmrepl-tr-cluster-answer', preview(cluster.answer, 120));
      answer.title = cluster.answer;
      row.append(
        el(doc, 'td', '', String(i)),
        answer,
        el(doc, 'td', 'lmrepl-tr-votes', String(cluster.votes)),
        el(doc, 'td', '', cluster.members.join(', '))
      );
      body.append(row);
    });
    table.append(body);
    box.append(table);
  }
  const survivors = record.survivors
    .map(i => record.candidates.find(c => c.index === i))
    .filter((c): c is CandidateRecord => c !== undefined);
  if (survivors.length) {
    box.append(el(doc, 'div', 'lmrepl-tr-label', 'Survivors (largest cluster): VC·Len decides'));
    const table = el(doc, 'table', 'lmrepl-tr-table lmrepl-tr-score-table');
    table.append(headRow(doc, ['candidate', 'VC', 'Len', 'VC·Len', 'grounded']));
    const body = el(doc, 'tbody');
    for (const cand of survivors) {
      const row = el(doc, 'tr', 'lmrepl-tr-survivor');
      row.dataset.candidateIndex = String(cand.index);
      const winner = cand.index === record.winner;
      if (winner) {
        row.classList.add('lmrepl-tr-winner-row');
      }
      row.append(
        el(doc, 'td', '', winner ? `${cand.index} ★` : String(cand.index)),
        el(doc, 'td', 'lmrepl-tr-vc', fixed(cand.vc, 2)),
        el(doc, 'td', 'lmrepl-tr-len', String(cand.length)),
        el(doc, 'td', 'lmrepl-tr-score', fixed(cand.score, 1)),
        el(doc, 'td', '', cand.grounded === null ? '—' : cand.grounded ? 'yes' : 'no')
      );
      body.append(row);
    }
    table.append(body);
    box.append(table);
  }
  return box;
}

function headRow(doc: Document, labels: string[]): HTMLElement {
  const head = el(doc, 'thead');
  const row = el(doc, 'tr');
  row.append(...labels.map(label => el(doc, 'th', '', label)));
  head.append(row);
  return head;
}
