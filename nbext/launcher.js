// Cell bridge of the kernel_magics launcher (anywidget). Python side: kernel_magics/widgets/launcher.py.
// The kernel sends {type: "insert", id, text}; the bridge adds a code cell holding `text` below the cell
// whose output shows the launcher, through the JupyterLab application (window.jupyterapp, present when the
// lab exposes it), and answers {type: "inserted", id, ok}. Elsewhere it copies the text to the clipboard
// and answers ok: false, so the panel says to paste it.

function notebookOf(app, node) {
  const shell = app.shell;
  const widgets = shell.widgets ? [...shell.widgets("main")] : [shell.currentWidget];
  for (const panel of widgets) {
    const notebook = panel && panel.content;
    if (!notebook || !notebook.widgets || !notebook.model) continue;
    const index = notebook.widgets.findIndex((cell) => cell.node.contains(node));
    if (index >= 0) return { notebook, index };
  }
  return null;
}

function insertBelow(node, text) {
  const app = window.jupyterapp;
  if (!app) return false;
  const found = notebookOf(app, node);
  if (!found) return false;
  const { notebook, index } = found;
  notebook.model.sharedModel.insertCell(index + 1, { cell_type: "code", source: text });
  notebook.activeCellIndex = index + 1;
  return true;
}

function render({ model, el }) {
  el.classList.add("km-cell-bridge");
  const onMessage = (message) => {
    if (!message || message.type !== "insert") return;
    let ok = false;
    try {
      ok = insertBelow(el, message.text);
    } catch (err) {
      console.warn("kernel_magics launcher: could not insert the cell", err);
    }
    if (!ok && navigator.clipboard) navigator.clipboard.writeText(message.text).catch(() => {});
    model.send({ type: "inserted", id: message.id, ok });
  };
  model.on("msg:custom", onMessage);
  return () => model.off("msg:custom", onMessage);
}

export default { render };
