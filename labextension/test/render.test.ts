import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { renderData, renderRecord, renderResult } from '../src/render.js';
import { readRecord } from '../src/schema.js';
import { SearchRecord } from '../src/types.js';
import { all, fixture, newDocument, one } from './helpers.js';

function record(name: string): SearchRecord {
  const read = readRecord(fixture(name));
  assert.ok(read.record, read.notice ?? '');
  return read.record;
}

function render(name: string): HTMLElement {
  const doc = newDocument();
  const root = renderRecord(record(name), doc);
  doc.body.append(root);
  return root;
}

describe('SRLM search record', () => {
  const root = render('srlm_search.record.json');
  const data = fixture('srlm_search.record.json') as unknown as SearchRecord;

  it('has the root, header and answer', () => {
    assert.ok(root.classList.contains('lmrepl-trajectory'));
    const header = one(root, '.lmrepl-tr-header');
    assert.match(header.textContent ?? '', /SRLM search/);
    assert.equal(one(header, '[data-fact="k"] .lmrepl-tr-fact-value').textContent, '3');
    assert.equal(one(header, '[data-fact="mode"] .lmrepl-tr-fact-value').textContent, 'rlm');
    assert.equal(one(header, '[data-fact="model"] .lmrepl-tr-fact-value').textContent, 'm (openai)');
    assert.equal(
      one(header, '[data-fact="tokens"] .lmrepl-tr-fact-value').textContent,
      '2,211 in / 112 out'
    );
    assert.equal(one(header, '[data-fact="wall"] .lmrepl-tr-fact-value').textContent, '1.98 s');
    assert.equal(one(header, '[data-fact="cost"] .lmrepl-tr-fact-value').textContent, '$0');
    assert.equal(one(header, '.lmrepl-tr-badge').textContent, 'done');
    assert.match(header.textContent ?? '', /What is the answer\?/);
    const answer = one(root, '.lmrepl-tr-answer');
    assert.equal(one(answer, '.lmrepl-tr-answer-text pre').textContent, '42.0');
    assert.match(answer.textContent ?? '', /winner: candidate 1/);
    assert.match(answer.textContent ?? '', /vc_len/);
  });

  it('has one column per candidate, the winner marked', () => {
    const cols = all(root, '.lmrepl-tr-candidate');
    assert.equal(cols.length, 3);
    assert.deepEqual(
      cols.map(c => c.dataset.candidateIndex),
      ['0', '1', '2']
    );
    const winners = all(root, '.lmrepl-tr-candidate.lmrepl-tr-winner');
    assert.equal(winners.length, 1);
    assert.equal(winners[0]!.dataset.candidateIndex, '1');
    assert.deepEqual(
      cols.map(c => one(c, '.lmrepl-tr-cand-head .lmrepl-tr-badge').textContent),
      ['done', 'done', 'failed']
    );
    assert.deepEqual(
      cols.map(c => all(c, ':scope > .lmrepl-tr-steps > .lmrepl-tr-step').length),
      [3, 2, 0]
    );
    assert.match(cols[2]!.textContent ?? '', /HTTP 500/);
  });

  it('shows the cluster vote and the survivors’ scores', () => {
    const clusters = one(root, '.lmrepl-tr-clusters');
    const rows = all(clusters, 'tr.lmrepl-tr-cluster');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.dataset.votes, '2');
    assert.equal(one(rows[0]!, '.lmrepl-tr-votes').textContent, '2');
    assert.ok(rows[0]!.classList.contains('lmrepl-tr-winner-row'));
    const survivors = all(clusters, 'tr.lmrepl-tr-survivor');
    assert.deepEqual(
      survivors.map(r => r.dataset.candidateIndex),
      ['0', '1']
    );
    const scores = survivors.map(r => one(r, '.lmrepl-tr-score').textContent);
    const expected = data.candidates.slice(0, 2).map(c => (c.score as number).toFixed(1));
    assert.deepEqual(scores, expected);
    assert.deepEqual(scores, ['-54.1', '-18.5']);
    assert.deepEqual(
      survivors.map(r => one(r, '.lmrepl-tr-len').textContent),
      ['79', '33']
    );
    assert.deepEqual(
      survivors.map(r => one(r, '.lmrepl-tr-vc').textContent),
      ['-0.69', '-0.56']
    );
    assert.ok(survivors[1]!.classList.contains('lmrepl-tr-winner-row'));
  });

  it('highlights the code of each step', () => {
    const step = one(root, '.lmrepl-tr-candidate[data-candidate-index="0"] .lmrepl-tr-step');
    const code = one(step, 'pre.lmrepl-tr-code');
    assert.equal(code.textContent, 'n = len(context)\nprint(n)');
    const spans = all(code, 'span');
    assert.ok(spans.length >= 4, `${spans.length} spans`);
    assert.ok(spans.every(s => /^tok-/.test(s.className)));
    assert.ok(spans.some(s => s.classList.contains('tok-variableName')));
    assert.equal(one(step, '.lmrepl-tr-output pre').textContent, '186');
    assert.match(one(step, '.lmrepl-tr-step-head').textContent ?? '', /confidence 70/);
    const keywordStep = renderRecord(
      {
        ...record('srlm_search.record.json'),
        candidates: [
          {
            ...record('srlm_search.record.json').candidates[0]!,
            steps: [{ ...record('srlm_search.record.json').candidates[0]!.steps[0]!, code: 'for x in "ab": pass  # c\n' }]
          }
        ]
      },
      newDocument()
    );
    const classes = all(keywordStep, 'pre.lmrepl-tr-code span').map(s => s.className);
    assert.ok(classes.includes('tok-keyword'), classes.join(' '));
    assert.ok(classes.includes('tok-string'), classes.join(' '));
    assert.ok(classes.includes('tok-comment'), classes.join(' '));
  });

  it('puts sub-calls and children in details that expand', () => {
    const cand = one(root, '.lmrepl-tr-candidate[data-candidate-index="0"]');
    const subcalls = one(cand, ':scope > details.lmrepl-tr-subcalls') as HTMLDetailsElement;
    assert.equal(subcalls.open, false);
    assert.match(one(subcalls, 'summary').textContent ?? '', /Sub-calls \(2\)/);
    const items = all(subcalls, 'details.lmrepl-tr-subcall');
    assert.deepEqual(
      items.map(i => i.dataset.function),
      ['llm_query', 'rlm_query']
    );
    subcalls.open = true;
    (items[0] as HTMLDetailsElement).open = true;
    assert.equal(subcalls.open, true);
    assert.match(one(items[0]!, '.lmrepl-tr-subcall-prompt pre').textContent ?? '', /Say hi/);
    assert.equal(one(items[0]!, '.lmrepl-tr-subcall-response pre').textContent, 'Hi.');

    const children = one(cand, ':scope > details.lmrepl-tr-children') as HTMLDetailsElement;
    assert.match(one(children, 'summary').textContent ?? '', /Child runs \(1\)/);
    const child = one(children, 'details.lmrepl-tr-child') as HTMLDetailsElement;
    child.open = true;
    assert.equal(all(child, '.lmrepl-tr-step').length, 1);
    assert.match(child.textContent ?? '', /What is 6 \* 7\?/);
    assert.match(one(child, '.lmrepl-tr-run-answer').textContent ?? '', /42/);
    // Candidates without sub-calls or children show no empty sections.
    const plain = one(root, '.lmrepl-tr-candidate[data-candidate-index="1"]');
    assert.equal(all(plain, 'details.lmrepl-tr-subcalls, details.lmrepl-tr-children').length, 0);
  });

  it('sets no inline style: colours come from the theme stylesheet', () => {
    assert.equal(all(root, '[style]').length, 0);
    assert.equal(root.getAttribute('style'), null);
    // Only badges carry the fixed-colour status classes.
    for (const node of all(root, '[class*="lmrepl-tr-status-"]')) {
      assert.ok(node.classList.contains('lmrepl-tr-badge'));
    }
  });
});

describe('RLM run record', () => {
  const root = render('rlm_run.record.json');

  it('shows one trajectory with its timeout notice', () => {
    assert.match(one(root, '.lmrepl-tr-header').textContent ?? '', /RLM run/);
    const cols = all(root, '.lmrepl-tr-candidate');
    assert.equal(cols.length, 1);
    assert.ok(cols[0]!.classList.contains('lmrepl-tr-winner'));
    const steps = all(cols[0]!, '.lmrepl-tr-step');
    assert.equal(steps.length, 2);
    const status = one(steps[0]!, '.lmrepl-tr-cell-status');
    assert.equal(status.textContent, 'timeout');
    assert.match(one(steps[0]!, '.lmrepl-tr-step-notices').textContent ?? '', /timed out after 1\.0 s/);
    assert.ok(steps[1]!.classList.contains('lmrepl-tr-submitted'));
    assert.equal(one(root, '.lmrepl-tr-answer-text pre').textContent, 'done');
  });
});

describe('stop reasons', () => {
  function withStop(reason: string): HTMLElement {
    const rec = record('rlm_run.record.json');
    rec.stop_reason = reason;
    rec.candidates[0]!.stop_reason = reason;
    const doc = newDocument();
    const root = renderRecord(rec, doc);
    doc.body.append(root);
    return root;
  }

  it('mark a forced answer in the header and on its candidate', () => {
    const root = withStop('max_iterations');
    const header = one(root, '.lmrepl-tr-header .lmrepl-tr-stop');
    assert.equal(header.textContent, 'forced');
    assert.match(header.title, /max_iterations/);
    const cand = one(root, '.lmrepl-tr-candidate .lmrepl-tr-stop');
    assert.equal(cand.dataset.stopReason, 'max_iterations');
    assert.equal(one(withStop('stuck'), '.lmrepl-tr-stop').textContent, 'forced');
    assert.equal(one(withStop('limit'), '.lmrepl-tr-stop').textContent, 'limit');
  });

  it('name a forced stop that gave no answer', () => {
    const rec = record('rlm_run.record.json');
    rec.stop_reason = 'max_iterations';
    rec.answer = null;
    rec.candidates[0]!.stop_reason = 'max_iterations';
    rec.candidates[0]!.answer = null;
    const doc = newDocument();
    const root = renderRecord(rec, doc);
    assert.deepEqual(
      all(root, '.lmrepl-tr-stop').map(n => n.textContent),
      ['max iterations', 'max iterations']
    );
  });

  it('add nothing when the model answered on its own', () => {
    assert.equal(all(withStop('answered'), '.lmrepl-tr-stop').length, 0);
  });
});

describe('direct SRLM record', () => {
  it('shows the direct answer', () => {
    const root = render('srlm_direct.record.json');
    assert.equal(one(root, '[data-fact="mode"] .lmrepl-tr-fact-value').textContent, 'direct');
    assert.equal(all(root, '.lmrepl-tr-candidate').length, 1);
    assert.match(one(root, '.lmrepl-tr-candidate').textContent ?? '', /Direct answer/);
    assert.equal(one(root, '.lmrepl-tr-answer-text pre').textContent, 'Forty-two.');
  });
});

describe('schema version 1', () => {
  it('renders without sub-call or child lists', () => {
    const root = render('schema1_record.json');
    const data = fixture('schema1_record.json') as { candidates: unknown[] };
    assert.equal(all(root, '.lmrepl-tr-candidate').length, data.candidates.length);
    assert.equal(all(root, '.lmrepl-tr-subcalls, .lmrepl-tr-children').length, 0);
    assert.equal(all(root, '.lmrepl-tr-winner').length, 1);
    assert.ok(all(root, '.lmrepl-tr-step').length > 0);
  });
});

describe('unknown schema versions', () => {
  it('shows a notice and the text/plain fallback', () => {
    const doc = newDocument();
    const data = { ...fixture('srlm_search.record.json'), schema_version: '3' };
    const root = renderData(data, doc, 'SRLM: answer 42');
    const note = one(root, '.lmrepl-tr-notice');
    assert.match(note.textContent ?? '', /schema version 3/);
    assert.match(note.textContent ?? '', /reads 1 and 2/);
    assert.match(note.textContent ?? '', /update lmrepl/);
    assert.equal(one(root, '.lmrepl-tr-fallback').textContent, 'SRLM: answer 42');
    assert.equal(all(root, '.lmrepl-tr-candidate').length, 0);
  });

  it('never throws on odd data', () => {
    const doc = newDocument();
    const odd: unknown[] = [
      null,
      42,
      'text',
      [],
      {},
      { schema_version: 2 },
      { schema_version: '2', candidates: 'x', clusters: [1, null], survivors: 'y' },
      {
        schema_version: '2',
        winner: 'a',
        candidates: [
          null,
          { steps: 5, subcalls: [null, 3, { prompt: 7 }], children: [{ children: [{}] }] },
          { index: 'x', steps: [{ cells: [{ status: 7 }], notices: [1, 'n'] }] }
        ]
      }
    ];
    for (const data of odd) {
      const root = renderData(data, doc);
      assert.ok(root.classList.contains('lmrepl-trajectory'));
    }
    assert.match(
      one(renderData({ schema_version: 2 }, doc), '.lmrepl-tr-notice').textContent ?? '',
      /schema version 2;/
    );
    assert.match(one(renderData({}, doc), '.lmrepl-tr-notice').textContent ?? '', /\(none\)/);
  });
});

describe('untrusted text', () => {
  const payloads = [
    '<img src=x onerror="globalThis.pwned=1">',
    '<script>globalThis.pwned=1</script>',
    '<svg onload="globalThis.pwned=1"></svg>',
    '<a href="javascript:globalThis.pwned=1">x</a>'
  ];
  const evil = payloads.join('\n');

  it('is shown as text, never as markup', () => {
    const base = record('srlm_search.record.json');
    const cand = base.candidates[0]!;
    const data: SearchRecord = {
      ...base,
      question: evil,
      answer: evil,
      error: evil,
      status: 'failed',
      context_info: evil,
      clusters: [{ answer: evil, members: [0], votes: 1, normalized: evil }],
      candidates: [
        {
          ...cand,
          answer: evil,
          error: evil,
          status: 'failed',
          question: evil,
          steps: cand.steps.map(s => ({
            ...s,
            code: evil,
            output: evil,
            reply: evil,
            answer: evil,
            notices: [evil],
            cells: [{ code: evil, output: evil, status: evil, duration: 0, notice: evil }]
          })),
          subcalls: cand.subcalls.map(s => ({ ...s, prompt: evil, response: evil, error: evil, function: evil })),
          children: cand.children.map(c => ({ ...c, question: evil, answer: evil }))
        }
      ]
    };
    const doc = newDocument();
    const root = renderRecord(data, doc);
    doc.body.append(root);
    assert.equal(all(root, 'img, script, svg, a, iframe').length, 0);
    for (const node of all(root, '*')) {
      for (const attr of Array.from(node.attributes)) {
        assert.ok(!/^on/i.test(attr.name), `${attr.name} on ${node.tagName}`);
      }
    }
    assert.ok((root.textContent ?? '').includes(payloads[0]!));
    assert.ok((root.textContent ?? '').includes(payloads[1]!));
    assert.equal((globalThis as { pwned?: number }).pwned, undefined);
  });
});

describe('long outputs', () => {
  it('are cut with a "show all" button that expands them', () => {
    const base = record('rlm_run.record.json');
    const long = Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n');
    const step = { ...base.candidates[0]!.steps[1]!, output: long };
    const data = { ...base, candidates: [{ ...base.candidates[0]!, steps: [step] }] };
    const doc = newDocument();
    const root = renderRecord(data, doc);
    const out = one(root, '.lmrepl-tr-output');
    const pre = one(out, 'pre');
    assert.ok((pre.textContent ?? '').length < long.length);
    assert.ok((pre.textContent ?? '').startsWith('line 0\nline 1'));
    const button = one(out, 'button.lmrepl-tr-expand');
    assert.match(button.textContent ?? '', /show all/);
    button.click();
    assert.equal(pre.textContent, long);
    assert.equal(button.textContent, 'show less');
    button.click();
    assert.ok((pre.textContent ?? '').length < long.length);
    // Short outputs have no button.
    assert.equal(all(renderRecord(base, doc), '.lmrepl-tr-output button').length, 0);
  });
});

describe('renderResult', () => {
  it('puts notices above the record, or shows them alone', () => {
    const doc = newDocument();
    const rec = record('rlm_run.record.json');
    const root = renderResult({ record: rec, notices: ['Skipped line 3.'] }, doc);
    assert.equal(root.firstElementChild?.className, 'lmrepl-tr-notice');
    assert.equal(all(root, '.lmrepl-tr-candidate').length, 1);
    const alone = renderResult({ record: null, notices: ['Not a trajectory.'] }, doc);
    assert.ok(alone.classList.contains('lmrepl-trajectory'));
    assert.equal(one(alone, '.lmrepl-tr-notice').textContent, 'Not a trajectory.');
  });
});
