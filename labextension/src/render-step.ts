/**
 * One step of a run: its head (iteration, confidence, cell statuses, duration), code
 * and output (or the bare reply), notices, submitted answer and the model's reply.
 */

import { badge, details, el, expandable, preview, seconds, TEXT_LIMITS } from './dom.js';
import { codeBlock } from './highlight.js';
import { StepRecord } from './types.js';

export function renderStep(step: StepRecord, doc: Document, key: string): HTMLElement {
  const node = el(doc, 'div', 'lmrepl-tr-step');
  node.dataset.iteration = String(step.iteration);
  if (step.submitted) {
    node.classList.add('lmrepl-tr-submitted');
  }
  const head = el(doc, 'div', 'lmrepl-tr-step-head');
  head.append(el(doc, 'span', 'lmrepl-tr-step-title', `Step ${step.iteration}`));
  if (step.confidence !== null) {
    head.append(el(doc, 'span', 'lmrepl-tr-confidence', `confidence ${step.confidence.toFixed(0)}`));
  }
  for (const [i, cell] of step.cells.entries()) {
    if (cell.status !== 'ok') {
      const tag = badge(doc, cell.status);
      tag.classList.add('lmrepl-tr-cell-status');
      tag.title = `cell ${i + 1}: ${cell.status}${cell.notice ? ` — ${cell.notice}` : ''}`;
      head.append(tag);
    }
  }
  if (step.submitted) {
    head.append(el(doc, 'span', 'lmrepl-tr-submitted-tag', 'submitted'));
  }
  head.append(el(doc, 'span', 'lmrepl-tr-duration', seconds(step.duration)));
  node.append(head);

  if (step.code) {
    node.append(codeBlock(doc, step.code));
  } else if (step.reply) {
    // No code block: the reply itself is what the step did.
    node.append(expandable(doc, step.reply, 'lmrepl-tr-reply-text', TEXT_LIMITS));
  }
  if (step.code || step.output) {
    node.append(expandable(doc, step.output, 'lmrepl-tr-output'));
  }
  if (step.notices.length) {
    const list = el(doc, 'ul', 'lmrepl-tr-step-notices');
    list.append(...step.notices.map(text => el(doc, 'li', '', text)));
    node.append(list);
  }
  if (step.submitted && step.answer !== null) {
    const answer = el(doc, 'div', 'lmrepl-tr-step-answer');
    answer.append(el(doc, 'span', 'lmrepl-tr-label', 'submitted'), el(doc, 'code', '', preview(step.answer, 200)));
    node.append(answer);
  }
  if (step.code && step.reply) {
    const reply = details(doc, 'lmrepl-tr-reply', 'model reply', `${key}/reply`);
    reply.append(expandable(doc, step.reply, 'lmrepl-tr-reply-text'));
    node.append(reply);
  }
  return node;
}
