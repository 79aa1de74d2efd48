/**
 * Render a search record as DOM: header, final answer, clusters and scores, and one
 * column per candidate with its steps, sub-calls and child runs.
 *
 * Framework-free (only `Document`), so the same code serves the MIME renderer, the
 * document viewer and the jsdom unit tests. Colours come from the stylesheet, which
 * uses JupyterLab's `--jp-*` variables; no element gets an inline style.
 *
 * This module holds the entry points; the parts live in render-header.ts (header,
 * answer, clusters), render-candidates.ts (the candidate columns), render-run.ts (a
 * run's body, sub-calls and child runs) and render-step.ts (one step).
 */

import { el } from './dom.js';
import { renderCandidates } from './render-candidates.js';
import { renderAnswer, renderClusters, renderHeader } from './render-header.js';
import { readRecord } from './schema.js';
import { ParseResult, SearchRecord } from './types.js';

/** A notice box (version mismatch, skipped log lines, a file we cannot read). */
export function notice(doc: Document, text: string): HTMLElement {
  const node = el(doc, 'div', 'lmrepl-tr-notice', text);
  node.setAttribute('role', 'note');
  return node;
}

/** The whole view of `record`. */
export function renderRecord(record: SearchRecord, doc: Document): HTMLElement {
  const root = el(doc, 'div', 'lmrepl-trajectory');
  root.dataset.kind = record.kind;
  root.dataset.status = record.status;
  root.append(renderHeader(record, doc), renderAnswer(record, doc));
  const clusters = renderClusters(record, doc);
  if (clusters) {
    root.append(clusters);
  }
  root.append(renderCandidates(record, doc));
  return root;
}

/**
 * Render any data claimed to be a record: a readable one as `renderRecord`, any
 * other as a notice plus `fallbackText` (the bundle's `text/plain`). Never throws.
 */
export function renderData(
  data: unknown,
  doc: Document,
  fallbackText?: string
): HTMLElement {
  const read = readRecord(data);
  if (read.record) {
    return renderRecord(read.record, doc);
  }
  return renderMessage(doc, [read.notice], fallbackText);
}

/** Notices above the view of a parsed file (or alone, when it held no record). */
export function renderResult(result: ParseResult, doc: Document): HTMLElement {
  if (!result.record) {
    return renderMessage(doc, result.notices);
  }
  const root = renderRecord(result.record, doc);
  root.prepend(...result.notices.map(text => notice(doc, text)));
  return root;
}

function renderMessage(doc: Document, notices: string[], fallbackText?: string): HTMLElement {
  const root = el(doc, 'div', 'lmrepl-trajectory lmrepl-tr-unreadable');
  root.append(...notices.map(text => notice(doc, text)));
  if (fallbackText) {
    root.append(el(doc, 'pre', 'lmrepl-tr-pre lmrepl-tr-fallback', fallbackText));
  }
  return root;
}
