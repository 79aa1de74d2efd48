/**
 * One column per candidate: its head (status, grounding, winner), facts, and body.
 */

import { badge, count, el, fact, fixed, groundingBadge, stopBadge } from './dom.js';
import { renderRunBody, runTime } from './render-run.js';
import { CandidateRecord, SearchRecord } from './types.js';

export function renderCandidates(record: SearchRecord, doc: Document): HTMLElement {
  const row = el(doc, 'div', 'lmrepl-tr-candidates');
  if (record.candidates.length === 1) {
    row.classList.add('lmrepl-tr-single');
  }
  // Schema 1 kept counts, not lists, of sub-calls and children: show neither.
  const lists = record.schema_version !== '1';
  for (const cand of record.candidates) {
    row.append(renderCandidate(record, cand, doc, lists));
  }
  if (!record.candidates.length) {
    row.append(el(doc, 'div', 'lmrepl-tr-muted', 'No candidates yet.'));
  }
  return row;
}

function renderCandidate(
  record: SearchRecord,
  cand: CandidateRecord,
  doc: Document,
  lists: boolean
): HTMLElement {
  const col = el(doc, 'div', 'lmrepl-tr-candidate');
  col.dataset.candidateIndex = String(cand.index);
  col.dataset.status = cand.status;
  const winner = cand.index === record.winner;
  if (winner) {
    col.classList.add('lmrepl-tr-winner');
  }
  const head = el(doc, 'div', 'lmrepl-tr-cand-head');
  head.append(el(doc, 'span', 'lmrepl-tr-cand-title', `Candidate ${cand.index}`), badge(doc, cand.status));
  const stop = stopBadge(doc, cand.stop_reason, cand.answer !== null);
  if (stop) {
    head.append(stop);
  }
  const grounding = groundingBadge(doc, cand.grounded);
  if (grounding) {
    head.append(grounding);
  }
  if (winner) {
    head.append(el(doc, 'span', 'lmrepl-tr-winner-tag', '★ winner'));
  }
  col.append(head);

  const facts = el(doc, 'div', 'lmrepl-tr-facts');
  facts.append(
    fact(doc, 'steps', 'steps', String(cand.steps.length)),
    fact(doc, 'vc', 'VC', fixed(cand.vc, 2)),
    fact(doc, 'len', 'Len', String(cand.length)),
    fact(doc, 'score', 'VC·Len', fixed(cand.score, 1)),
    fact(doc, 'time', 'time', runTime(cand)),
    fact(doc, 'tokens', 'tokens', `${count(cand.input_tokens)} / ${count(cand.output_tokens)}`)
  );
  col.append(facts);
  col.append(...renderRunBody(cand, doc, lists, `c${cand.index}`, record.mode === 'direct'));
  return col;
}
