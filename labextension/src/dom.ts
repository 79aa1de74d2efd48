/**
 * Small DOM and formatting helpers for the renderer.
 *
 * Every piece of record data goes into the page through `textContent` (never
 * `innerHTML`): answers, code and outputs are model output and may hold markup.
 */

/** Create `<tag class="...">` with optional text content. */
export function el<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Status values that have a badge colour (anything else gets the neutral one). */
const KNOWN_STATUSES = new Set([
  'queued',
  'running',
  'done',
  'no_answer',
  'failed',
  'cancelled',
  'stopped',
  'ok',
  'error',
  'timeout',
  'restarted',
  'died',
  'refused'
]);

/** A coloured status label; the colour comes from the stylesheet class. */
export function badge(doc: Document, status: string): HTMLElement {
  const known = KNOWN_STATUSES.has(status) ? status : 'other';
  const node = el(
    doc,
    'span',
    `lmrepl-tr-badge lmrepl-tr-status-${known.replace('_', '-')}`,
    status.replace('_', ' ')
  );
  node.dataset.status = status;
  return node;
}

const STOP_WORDS: Record<string, [string, string]> = {
  max_iterations: ['forced', 'Forced answer: the last of max_iterations turns asked for it.'],
  stuck: ['forced', 'Forced answer: the same code gave the same output twice.'],
  limit: ['limit', 'Stopped by a hard limit (budget, tokens, time or errors).']
};

/**
 * A `forced` / `limit` tag for a stop worth pointing out, or null for the others.
 * Without an answer a forced stop is named as such (`max iterations`, `stuck`).
 */
export function stopBadge(
  doc: Document,
  stopReason: string | null,
  hasAnswer: boolean
): HTMLElement | null {
  const words = stopReason === null ? undefined : STOP_WORDS[stopReason];
  if (!words) {
    return null;
  }
  const label = words[0] === 'forced' && !hasAnswer ? (stopReason ?? '').replace('_', ' ') : words[0];
  const node = el(doc, 'span', 'lmrepl-tr-stop', label);
  node.title = words[1];
  node.dataset.stopReason = stopReason ?? '';
  return node;
}

/** `grounded` / `ungrounded` tag, or null when unknown (no answer). */
export function groundingBadge(doc: Document, grounded: boolean | null): HTMLElement | null {
  if (grounded === null) {
    return null;
  }
  const node = el(
    doc,
    'span',
    `lmrepl-tr-grounding lmrepl-tr-${grounded ? 'grounded' : 'ungrounded'}`,
    grounded ? 'grounded' : 'ungrounded'
  );
  node.title = grounded
    ? 'The answer was computed by code or appeared in output the model had seen.'
    : 'A constant or plain-text answer never seen in output: possibly a guess.';
  return node;
}

/** A `label value` pair in a facts line. */
export function fact(doc: Document, key: string, label: string, value: string): HTMLElement {
  const node = el(doc, 'span', 'lmrepl-tr-fact');
  node.dataset.fact = key;
  node.append(el(doc, 'span', 'lmrepl-tr-fact-label', label), el(doc, 'span', 'lmrepl-tr-fact-value', value));
  return node;
}

export interface Limits {
  maxLines: number;
  maxChars: number;
}

export const OUTPUT_LIMITS: Limits = { maxLines: 12, maxChars: 1500 };
export const TEXT_LIMITS: Limits = { maxLines: 8, maxChars: 600 };

/** `text` cut to the limits, or null when it fits. */
export function truncate(text: string, limits: Limits): string | null {
  const lines = text.split('\n');
  let out = lines.length > limits.maxLines ? lines.slice(0, limits.maxLines).join('\n') : text;
  if (out.length > limits.maxChars) {
    out = out.slice(0, limits.maxChars);
  }
  return out.length < text.length ? out : null;
}

/**
 * A `<pre>` of `text`, cut to `limits` with a "show all" button when longer; the
 * button toggles between the cut and the whole text.
 */
export function expandable(
  doc: Document,
  text: string,
  className: string,
  limits: Limits = OUTPUT_LIMITS
): HTMLElement {
  const wrap = el(doc, 'div', `lmrepl-tr-expandable ${className}`);
  const pre = el(doc, 'pre', 'lmrepl-tr-pre');
  wrap.append(pre);
  const cut = truncate(text, limits);
  if (cut === null) {
    pre.textContent = text;
    return wrap;
  }
  const more = text.length - cut.length;
  const lessLabel = 'show less';
  const moreLabel = `show all (${count(more)} more characters)`;
  pre.textContent = `${cut}…`;
  const button = el(doc, 'button', 'lmrepl-tr-expand', moreLabel);
  button.type = 'button';
  button.addEventListener('click', () => {
    const open = wrap.classList.toggle('lmrepl-tr-expanded');
    pre.textContent = open ? text : `${cut}…`;
    button.textContent = open ? lessLabel : moreLabel;
  });
  wrap.append(button);
  return wrap;
}

/** A `<details>` with a summary; `key` lets a re-render keep it open. */
export function details(
  doc: Document,
  className: string,
  summary: string | Node[],
  key: string
): HTMLDetailsElement {
  const node = el(doc, 'details', className);
  node.dataset.key = key;
  const head = el(doc, 'summary', 'lmrepl-tr-summary');
  if (typeof summary === 'string') {
    head.textContent = summary;
  } else {
    head.append(...summary);
  }
  node.append(head);
  return node;
}

/** 12,345 */
export function count(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** Seconds as `0.42 s`, `12.3 s` or `2 min 05 s`. */
export function seconds(value: number | null): string {
  if (value === null || !Number.isFinite(value)) {
    return '—';
  }
  if (value < 10) {
    return `${value.toFixed(2)} s`;
  }
  if (value < 120) {
    return `${value.toFixed(1)} s`;
  }
  const minutes = Math.floor(value / 60);
  const rest = Math.round(value - minutes * 60);
  return `${minutes} min ${String(rest).padStart(2, '0')} s`;
}

/** USD with enough digits for small amounts. */
export function dollars(value: number): string {
  if (value === 0) {
    return '$0';
  }
  return value >= 0.01 ? `$${value.toFixed(2)}` : `$${value.toPrecision(2)}`;
}

/** A number with `digits` decimals, or `—` when unknown. */
export function fixed(value: number | null, digits: number): string {
  return value === null ? '—' : value.toFixed(digits);
}

/** The first line of `text`, cut to `max` characters (for summaries). */
export function preview(text: string, max = 80): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** A status and its error text (a failed run, sub-call or search). */
export function errorBox(doc: Document, status: string, error: string): HTMLElement {
  const box = el(doc, 'div', 'lmrepl-tr-error');
  box.append(
    el(doc, 'span', 'lmrepl-tr-error-label', `${status}: `),
    expandable(doc, error, 'lmrepl-tr-error-text', TEXT_LIMITS)
  );
  return box;
}
