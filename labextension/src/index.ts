/**
 * JupyterLab glue: the "lmrepl trajectory" document viewer for `.json` and `.jsonl`
 * files. (The notebook output renderer is the MIME extension in `mime.ts`.)
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { WidgetTracker } from '@jupyterlab/apputils';
import { DocumentWidget } from '@jupyterlab/docregistry';

import { FACTORY_NAME, TrajectoryView, TrajectoryViewerFactory } from './view.js';

const viewer: JupyterFrontEndPlugin<void> = {
  id: 'lmrepl-jupyter:viewer',
  description: 'Opens lmrepl trajectory files and RLMLogger JSONL logs.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const registry = app.docRegistry;
    // JupyterLab 4 knows `.jsonl`; older releases did not.
    if (!registry.getFileType('jsonl')) {
      registry.addFileType({
        name: 'jsonl',
        displayName: 'JSON Lines File',
        extensions: ['.jsonl', '.ndjson'],
        mimeTypes: ['application/jsonl'],
        contentType: 'file',
        fileFormat: 'text'
      });
    }
    const factory = new TrajectoryViewerFactory(
      {
        name: FACTORY_NAME,
        label: FACTORY_NAME,
        fileTypes: ['json', 'jsonl'],
        defaultFor: [],
        modelName: 'text',
        readOnly: true
      },
      app.serviceManager.contents
    );
    const tracker = new WidgetTracker<DocumentWidget<TrajectoryView>>({
      namespace: 'lmrepl-trajectory'
    });
    factory.widgetCreated.connect((_, widget) => {
      widget.context.pathChanged.connect(() => void tracker.save(widget));
      void tracker.add(widget);
    });
    registry.addWidgetFactory(factory);
    if (restorer) {
      void restorer.restore(tracker, {
        command: 'docmanager:open',
        args: widget => ({ path: widget.context.path, factory: FACTORY_NAME }),
        name: widget => widget.context.path
      });
    }
  }
};

export default [viewer];
