/**
 * Python syntax highlighting without an editor: parse with `@lezer/python` and
 * wrap each styled range in a span carrying `classHighlighter`'s `tok-*` classes.
 * The stylesheet maps those classes to JupyterLab's `--jp-mirror-editor-*-color`
 * variables, so the colours follow the theme like a code cell's do.
 */

import { classHighlighter, highlightTree } from '@lezer/highlight';
import { parser } from '@lezer/python';

/** Longer code is shown plain: highlighting is for reading, not worth a stall. */
const MAX_HIGHLIGHT_CHARS = 50_000;

/** Append `code` to `target` as text nodes and highlighted spans. */
export function highlightPython(doc: Document, code: string, target: HTMLElement): void {
  if (code.length > MAX_HIGHLIGHT_CHARS) {
    target.append(doc.createTextNode(code));
    return;
  }
  let tree;
  try {
    tree = parser.parse(code);
  } catch {
    target.append(doc.createTextNode(code));
    return;
  }
  // highlightTree reports styled ranges in order; the gaps between them are plain.
  let pos = 0;
  highlightTree(tree, classHighlighter, (from, to, classes) => {
    if (from > pos) {
      target.append(doc.createTextNode(code.slice(pos, from)));
    }
    const span = doc.createElement('span');
    span.className = classes;
    span.textContent = code.slice(from, to);
    target.append(span);
    pos = to;
  });
  if (pos < code.length) {
    target.append(doc.createTextNode(code.slice(pos)));
  }
}

/** A `<pre>` holding highlighted `code`. */
export function codeBlock(doc: Document, code: string, className = ''): HTMLElement {
  const pre = doc.createElement('pre');
  pre.className = `lmrepl-tr-code ${className}`.trim();
  highlightPython(doc, code, pre);
  return pre;
}
