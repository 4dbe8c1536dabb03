// Cell bridge of the kernel_magics launcher (anywidget). Python side: kernel_magics/widgets/launcher.py.
// The kernel sends {type: "insert", id, text}; the bridge adds a code cell holding `text` below the cell
// whose output shows the launcher (the cell whose outputs hold the widget `host`), and answers
// {type: "inserted", id, ok, how}. It reaches the notebook through the widget manager's document context
// (JupyterLab and Notebook 7), else through window.jupyterapp when the lab exposes it; elsewhere it copies
// the text to the clipboard and answers ok: false, so the panel says to paste it.

const WIDGET_VIEW = "application/vnd.jupyter.widget-view+json";

function hostIndex(cells, hostId) {
  for (let i = 0; i < cells.length; i++) {
    const outputs = cells[i].cell_type === "code" && cells[i].getOutputs ? cells[i].getOutputs() : [];
    for (const output of outputs) {
      const view = output.data && output.data[WIDGET_VIEW];
      if (view && view.model_id === hostId) return i;
    }
  }
  return -1;
}

function throughContext(model, text) {
  const manager = model.widget_manager;
  const context = manager && manager.context;
  const notebook = context && context.model && context.model.sharedModel;
  if (!notebook || !notebook.cells || !notebook.insertCell) return false;
  const index = hostIndex(notebook.cells, model.get("host"));
  if (index < 0) return false;
  notebook.insertCell(index + 1, { cell_type: "code", source: text });
  return true;
}

function throughApp(node, text) {
  const app = window.jupyterapp;
  if (!app) return false;
  const widgets = app.shell.widgets ? [...app.shell.widgets("main")] : [app.shell.currentWidget];
  for (const panel of widgets) {
    const notebook = panel && panel.content;
    if (!notebook || !notebook.widgets || !notebook.model) continue;
    const index = notebook.widgets.findIndex((cell) => cell.node.contains(node));
    if (index < 0) continue;
    notebook.model.sharedModel.insertCell(index + 1, { cell_type: "code", source: text });
    return true;
  }
  return false;
}

function insert(model, el, text) {
  try {
    if (throughContext(model, text)) return "context";
  } catch (err) {
    console.warn("kernel_magics launcher: the notebook context refused the cell", err);
  }
  try {
    if (throughApp(el, text)) return "app";
  } catch (err) {
    console.warn("kernel_magics launcher: the application refused the cell", err);
  }
  if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
  return "";
}

function render({ model, el }) {
  el.classList.add("km-cell-bridge");
  const onMessage = (message) => {
    if (!message || message.type !== "insert") return;
    const how = insert(model, el, message.text);
    el.dataset.insertedBy = how || "clipboard";
    model.send({ type: "inserted", id: message.id, ok: !!how, how });
  };
  model.on("msg:custom", onMessage);
  return () => model.off("msg:custom", onMessage);
}

export default { render };
