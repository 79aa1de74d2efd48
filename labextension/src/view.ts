/**
 * The document viewer: a trajectory file or an RLMLogger log, shown with the same
 * renderer as a notebook output, and re-rendered when the file changes on disk.
 */

import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import { parseTrajectoryText } from './fold.js';
import { notice, renderResult } from './render.js';

/** The "Open With" name of the viewer. */
export const FACTORY_NAME = 'lmrepl trajectory';

/** Waits this long after a change before re-rendering (a live log changes often). */
const RERENDER_DELAY_MS = 300;
/** How often a visible viewer asks whether its file changed on disk. */
const POLL_MS = 2000;

/** What the viewer needs of the contents service: a file's modification time. */
export interface IDiskStat {
  get(path: string, options: { content: false }): Promise<{ last_modified: string }>;
}

export class TrajectoryView extends Widget {
  /**
   * `disk`, when given, is polled while the viewer is visible: JupyterLab does not
   * reload a file that changed on disk by itself, and a log being written by a
   * running search changes all the time.
   */
  constructor(
    private readonly context: DocumentRegistry.Context,
    private readonly disk: IDiskStat | null = null
  ) {
    super();
    this.addClass('lmrepl-viewer-content');
    void context.ready.then(() => {
      this.render();
      context.model.contentChanged.connect(this.scheduleRender, this);
      if (this.disk) {
        this.poller = window.setInterval(() => void this.poll(), POLL_MS);
      }
    });
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this.timer);
    window.clearInterval(this.poller);
    this.context.model.contentChanged.disconnect(this.scheduleRender, this);
    super.dispose();
  }

  private async poll(): Promise<void> {
    if (!this.disk || !this.isVisible || this.polling || this.isDisposed) {
      return;
    }
    this.polling = true;
    try {
      const known = this.context.contentsModel?.last_modified;
      const stat = await this.disk.get(this.context.path, { content: false });
      if (known && stat.last_modified !== known && !this.isDisposed) {
        await this.context.revert(); // fires contentChanged, which re-renders
      }
    } catch {
      // The file was moved or deleted, or the server is away: try again later.
    } finally {
      this.polling = false;
    }
  }

  private scheduleRender(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.render(), RERENDER_DELAY_MS);
  }

  private render(): void {
    if (this.isDisposed) {
      return;
    }
    const doc = this.node.ownerDocument;
    // Keep what the reader opened and where they were across a re-render.
    const open = new Set<string>();
    this.node.querySelectorAll<HTMLDetailsElement>('details[data-key]').forEach(d => {
      if (d.open && d.dataset.key) {
        open.add(d.dataset.key);
      }
    });
    const { scrollTop, scrollLeft } = this.node;
    let view: HTMLElement;
    try {
      view = renderResult(parseTrajectoryText(this.context.model.toString()), doc);
    } catch (err) {
      view = doc.createElement('div');
      view.className = 'lmrepl-trajectory';
      view.append(notice(doc, `The lmrepl viewer failed on this file: ${String(err)}`));
    }
    view.querySelectorAll<HTMLDetailsElement>('details[data-key]').forEach(d => {
      if (d.dataset.key && open.has(d.dataset.key)) {
        d.open = true;
      }
    });
    this.node.replaceChildren(view);
    this.node.scrollTop = scrollTop;
    this.node.scrollLeft = scrollLeft;
  }

  private timer = 0;
  private poller = 0;
  private polling = false;
}

export class TrajectoryViewerFactory extends ABCWidgetFactory<DocumentWidget<TrajectoryView>> {
  constructor(
    options: DocumentRegistry.IWidgetFactoryOptions<DocumentWidget<TrajectoryView>>,
    private readonly disk: IDiskStat | null = null
  ) {
    super(options);
  }

  protected createNewWidget(context: DocumentRegistry.Context): DocumentWidget<TrajectoryView> {
    const content = new TrajectoryView(context, this.disk);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('lmrepl-viewer');
    widget.title.caption = `${context.localPath} (lmrepl trajectory)`;
    return widget;
  }
}
