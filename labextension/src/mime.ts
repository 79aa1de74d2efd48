/**
 * The MIME renderer extension for `application/vnd.lmrepl.trajectory+json`.
 *
 * `%%srlm` / `%%rlm` results carry the record under this type next to a static
 * `text/html` panel; rank 0 makes JupyterLab prefer this richer view (the HTML
 * renderer ranks 50), while other frontends keep the HTML.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { notice, renderData } from './render.js';
import { MIME_TYPE } from './types.js';

/** The `text/plain` of a bundle, if it has one (a string, or a list of lines). */
function plainText(data: IRenderMime.IMimeModel['data']): string | undefined {
  const text = data['text/plain'];
  if (typeof text === 'string') {
    return text;
  }
  if (Array.isArray(text) && text.every(line => typeof line === 'string')) {
    return text.join('');
  }
  return undefined;
}

/** Renders one output's trajectory record. */
export class TrajectoryRenderer extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('lmrepl-renderer');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const doc = this.node.ownerDocument;
    const fallback = plainText(model.data);
    let view: HTMLElement;
    try {
      view = renderData(model.data[MIME_TYPE], doc, fallback);
    } catch (err) {
      // A bug here must not break the notebook: show what we can.
      view = doc.createElement('div');
      view.className = 'lmrepl-trajectory';
      view.append(notice(doc, `The lmrepl viewer failed on this record: ${String(err)}`));
      if (fallback) {
        const pre = doc.createElement('pre');
        pre.textContent = fallback;
        view.append(pre);
      }
    }
    this.node.replaceChildren(view);
    return Promise.resolve();
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  defaultRank: 0,
  createRenderer: () => new TrajectoryRenderer()
};

const extension: IRenderMime.IExtension = {
  id: 'lmrepl-jupyter:trajectory-renderer',
  description: 'Renders lmrepl trajectory records (SRLM searches and RLM runs).',
  rendererFactory,
  rank: 0,
  dataType: 'json'
};

export default extension;
