// Dataset viewer (anywidget): renders the page of rows the kernel sends (`rows`), pages with
// `page`/`pages`, and lists the bad rows (`problems`). Thumbnails arrive as data: URLs.

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function render({ model, el }) {
  el.classList.add("km-dataset");
  const summary = h("div", { class: "km-dataset-summary" });
  const notes = h("div", { class: "km-dataset-notes" });
  const prev = h("button", { type: "button", class: "km-dataset-prev" }, "‹ prev");
  const next = h("button", { type: "button", class: "km-dataset-next" }, "next ›");
  const where = h("span", { class: "km-dataset-page" });
  const nav = h("div", { class: "km-dataset-nav" }, prev, where, next);
  const grid = h("div", { class: "km-dataset-rows" });
  const problems = h("details", { class: "km-dataset-problems" });
  el.append(summary, notes, nav, grid, problems);

  const go = (delta) => {
    const page = Math.min(Math.max(0, model.get("page") + delta), model.get("pages") - 1);
    model.set("page", page);
    model.save_changes();
  };
  prev.addEventListener("click", () => go(-1));
  next.addEventListener("click", () => go(1));

  function draw() {
    summary.textContent = model.get("summary");
    notes.textContent = model.get("notes").join(" · ");
    const page = model.get("page");
    const pages = model.get("pages");
    where.textContent = `page ${page + 1} / ${pages}`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    nav.style.display = pages > 1 ? "" : "none";
    grid.replaceChildren(
      ...model.get("rows").map((row) =>
        h(
          "div",
          { class: "km-dataset-row" },
          h("div", { class: "km-dataset-label" }, row.label),
          row.images.length
            ? h(
                "div",
                { class: "km-dataset-images" },
                ...row.images.map((image) =>
                  h(
                    "figure",
                    { title: image.path },
                    image.src ? h("img", { src: image.src, alt: image.path }) : h("div", { class: "km-dataset-missing" }, "?"),
                    h("figcaption", {}, image.size),
                  ),
                ),
              )
            : null,
          h(
            "div",
            { class: "km-dataset-turns" },
            ...row.turns.map((turn) =>
              h(
                "div",
                { class: `km-dataset-turn km-role-${turn.role}` },
                h("span", { class: "km-dataset-role" }, turn.role),
                h("span", { class: "km-dataset-text" }, turn.text),
              ),
            ),
          ),
        ),
      ),
    );
    const bad = model.get("problems");
    problems.style.display = bad.length ? "" : "none";
    problems.replaceChildren(
      h("summary", {}, `${bad.length} bad row${bad.length === 1 ? "" : "s"} (left out of training with --on-bad-rows skip)`),
      h("ul", {}, ...bad.map((line) => h("li", {}, line))),
    );
    if (bad.length) problems.open = true;
  }

  draw();
  const onChange = () => draw();
  model.on("change:rows change:page change:pages change:problems change:summary change:notes", onChange);
  return () => model.off("change:rows change:page change:pages change:problems change:summary change:notes", onChange);
}

export default { render };
