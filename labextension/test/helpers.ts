/** Shared test helpers: the Python fixtures and a jsdom document. */

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { JSDOM } from 'jsdom';

/** `tests/files/` of the repository (tests run from `labextension/lib/test/`). */
const FIXTURES = fileURLToPath(new URL('../../../tests/files/', import.meta.url));

export function fixtureText(name: string): string {
  return readFileSync(FIXTURES + name, 'utf8');
}

export function fixture(name: string): Record<string, unknown> {
  return JSON.parse(fixtureText(name)) as Record<string, unknown>;
}

export function newDocument(): Document {
  return new JSDOM('<!doctype html><html><body></body></html>').window.document;
}

/** Every element under `root` matching `selector`. */
export function all(root: ParentNode, selector: string): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>(selector));
}

export function one(root: ParentNode, selector: string): HTMLElement {
  const node = root.querySelector<HTMLElement>(selector);
  if (!node) {
    throw new Error(`no element matches ${selector}`);
  }
  return node;
}
