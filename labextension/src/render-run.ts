/**
 * The body of a run (a candidate or a child run): answer, error, task, steps, and the
 * sub-calls and child runs it made (child runs recurse into this same body).
 */

import {
  badge,
  count,
  details,
  el,
  errorBox,
  expandable,
  fact,
  preview,
  seconds,
  TEXT_LIMITS
} from './dom.js';
import { renderStep } from './render-step.js';
import { RunRecord, SubcallRecord } from './types.js';

/** A run's wall time; an unfinished run has none yet. */
export function runTime(run: RunRecord): string {
  if (run.status === 'running' || run.status === 'queued') {
    return run.execution_time ? seconds(run.execution_time) : run.status === 'running' ? 'running…' : '—';
  }
  return seconds(run.execution_time);
}

/** Answer, error, steps, sub-calls and children of a candidate or a child run. */
export function renderRunBody(
  run: RunRecord,
  doc: Document,
  lists: boolean,
  key: string,
  direct = false
): HTMLElement[] {
  const parts: HTMLElement[] = [];
  if (run.answer !== null) {
    const answer = el(doc, 'div', 'lmrepl-tr-run-answer');
    answer.append(
      el(doc, 'span', 'lmrepl-tr-label', 'answer'),
      expandable(doc, run.answer, 'lmrepl-tr-run-answer-text', TEXT_LIMITS)
    );
    parts.push(answer);
  }
  if (run.error && run.status !== 'done') {
    parts.push(errorBox(doc, run.status, run.error));
  }
  if (run.question && run.depth > 0) {
    const question = el(doc, 'div', 'lmrepl-tr-run-question');
    question.append(
      el(doc, 'span', 'lmrepl-tr-label', 'task'),
      expandable(doc, run.question, 'lmrepl-tr-run-question-text', TEXT_LIMITS)
    );
    parts.push(question);
  }
  if (direct && !run.steps.length) {
    parts.push(el(doc, 'div', 'lmrepl-tr-muted', 'Direct answer: one model call, no REPL.'));
  }
  const steps = el(doc, 'div', 'lmrepl-tr-steps');
  steps.append(...run.steps.map((step, i) => renderStep(step, doc, `${key}/s${i}`)));
  parts.push(steps);
  if (lists && run.subcalls.length) {
    parts.push(renderSubcalls(run.subcalls, doc, `${key}/subcalls`));
  }
  if (lists && run.children.length) {
    parts.push(renderChildren(run.children, doc, lists, `${key}/children`));
  }
  return parts;
}

function renderSubcalls(subcalls: SubcallRecord[], doc: Document, key: string): HTMLElement {
  const errors = subcalls.filter(s => s.error !== null).length;
  const label = `Sub-calls (${subcalls.length}${errors ? `, ${errors} failed` : ''})`;
  const box = details(doc, 'lmrepl-tr-subcalls', label, key);
  subcalls.forEach((call, i) => {
    const summary = [
      el(doc, 'span', 'lmrepl-tr-subcall-fn', call.function),
      el(doc, 'span', 'lmrepl-tr-muted', ` ${preview(call.prompt, 60)} `),
      el(doc, 'span', 'lmrepl-tr-duration', seconds(call.duration))
    ];
    if (call.error !== null) {
      summary.splice(1, 0, badge(doc, 'error'));
    }
    const item = details(doc, 'lmrepl-tr-subcall', summary, `${key}/${i}`);
    item.dataset.function = call.function;
    const meta: string[] = [];
    if (call.model) meta.push(`model ${call.model}`);
    if (call.batch_index !== null) meta.push(`batch slot ${call.batch_index}`);
    if (call.child_run_id) meta.push(`child run ${call.child_run_id}`);
    if (meta.length) {
      item.append(el(doc, 'div', 'lmrepl-tr-muted', meta.join(' · ')));
    }
    item.append(
      el(doc, 'div', 'lmrepl-tr-label', 'prompt'),
      expandable(doc, call.prompt, 'lmrepl-tr-subcall-prompt'),
      el(doc, 'div', 'lmrepl-tr-label', 'response'),
      expandable(doc, call.response, 'lmrepl-tr-subcall-response')
    );
    if (call.error !== null) {
      item.append(errorBox(doc, 'error', call.error));
    }
    box.append(item);
  });
  return box;
}

function renderChildren(children: RunRecord[], doc: Document, lists: boolean, key: string): HTMLElement {
  const box = details(doc, 'lmrepl-tr-children', `Child runs (${children.length})`, key);
  children.forEach((child, i) => {
    const summary = [
      el(doc, 'span', 'lmrepl-tr-muted', `depth ${child.depth} `),
      badge(doc, child.status),
      el(doc, 'span', '', ` ${preview(child.question, 60)}`)
    ];
    const item = details(doc, 'lmrepl-tr-child', summary, `${key}/${i}`);
    item.dataset.runId = child.run_id;
    const facts = el(doc, 'div', 'lmrepl-tr-facts');
    facts.append(
      fact(doc, 'steps', 'steps', String(child.steps.length)),
      fact(doc, 'time', 'time', runTime(child)),
      fact(doc, 'tokens', 'tokens', `${count(child.input_tokens)} / ${count(child.output_tokens)}`)
    );
    item.append(facts, ...renderRunBody(child, doc, lists, `${key}/${i}`));
    box.append(item);
  });
  return box;
}
