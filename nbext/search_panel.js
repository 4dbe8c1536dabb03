// Search panel of kernel_magics (anywidget). Python side: kernel_magics/widgets/search_panel.py.
// Typing or changing a filter sends {type: "search"}; "Use" and "Download" send {type: "use" | "download"};
// "Refresh from Hub" sends {type: "refresh"}. Cards let through by a relaxed filter are marked km-relaxed.

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function size(params) {
  if (!params) return "?B";
  return params >= 1 ? `${+params.toFixed(2)}B` : `${Math.round(params * 1000)}M`;
}

function context(tokens) {
  if (!tokens) return "";
  if (tokens >= 1000000) return `${+(tokens / 1048576).toFixed(1)}M ctx`;
  return tokens >= 1000 ? `${Math.round(tokens / 1024)}k ctx` : `${tokens} ctx`;
}

function chips(values, kind) {
  return (values || []).map((v) => el("span", { class: `km-chip km-chip-${kind}`, text: v }));
}

function render({ model, el: root }) {
  const panel = el("div", { class: "km-search" });
  const query = el("input", {
    class: "km-search-query",
    type: "search",
    placeholder: "Describe the model you want — English or 中文, e.g. 能看图说话的中文视觉模型",
  });
  const k = el("select", { class: "km-search-k", title: "results" });
  for (const n of [5, 10, 20, 50]) k.append(el("option", { value: String(n), text: `${n} results` }));
  const refresh = el("button", { class: "km-refresh", text: "Refresh from Hub", title: "pull new model cards from the Hub" });
  refresh.addEventListener("click", () => {
    refresh.disabled = true;
    model.send({ type: "refresh" });
  });
  const bar = el("div", { class: "km-search-bar" }, [query, k, refresh]);

  const minSize = el("input", { class: "km-f-min", type: "number", min: "0", step: "0.1", placeholder: "min" });
  const maxSize = el("input", { class: "km-f-max", type: "number", min: "0", step: "0.1", placeholder: "max" });
  const languages = el("input", { class: "km-f-languages", type: "text", placeholder: "zh,en" });
  const license = el("select", { class: "km-f-license" });
  const modalityBoxes = {};
  const formatBoxes = {};
  const options = model.get("options") || {};
  license.append(el("option", { value: "", text: "any license" }));
  for (const name of options.licenses || []) license.append(el("option", { value: name, text: name }));
  const modalityGroup = el("span", { class: "km-f-group" }, [el("b", { text: "inputs" })]);
  for (const name of options.modalities || []) {
    const box = el("input", { type: "checkbox", value: name, class: `km-f-modality km-f-${name}` });
    modalityBoxes[name] = box;
    modalityGroup.append(el("label", {}, [box, document.createTextNode(name)]));
  }
  const formatGroup = el("span", { class: "km-f-group" }, [el("b", { text: "builds" })]);
  for (const name of options.formats || []) {
    const box = el("input", { type: "checkbox", value: name, class: `km-f-format km-f-${name}` });
    formatBoxes[name] = box;
    formatGroup.append(el("label", {}, [box, document.createTextNode(name)]));
  }
  const filters = el("div", { class: "km-search-filters" }, [
    el("span", { class: "km-f-group" }, [el("b", { text: "size (B)" }), minSize, el("span", { text: "–" }), maxSize]),
    modalityGroup,
    el("span", { class: "km-f-group" }, [el("b", { text: "languages" }), languages]),
    el("span", { class: "km-f-group" }, [el("b", { text: "license" }), license]),
    formatGroup,
  ]);
  const info = el("div", { class: "km-search-info" });
  const results = el("div", { class: "km-search-results" });
  const footer = el("div", { class: "km-search-footer" });
  panel.append(bar, filters, info, results, footer);
  root.append(panel);

  function readFilters() {
    const out = {};
    if (minSize.value !== "") out.min_params_b = parseFloat(minSize.value);
    if (maxSize.value !== "") out.max_params_b = parseFloat(maxSize.value);
    const mods = Object.values(modalityBoxes).filter((b) => b.checked).map((b) => b.value);
    if (mods.length) out.modalities = mods;
    const fmts = Object.values(formatBoxes).filter((b) => b.checked).map((b) => b.value);
    if (fmts.length) out.formats = fmts;
    const langs = languages.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (langs.length) out.languages = langs;
    if (license.value) out.license = license.value;
    return out;
  }

  function writeFilters() {
    const f = model.get("filters") || {};
    minSize.value = f.min_params_b ?? "";
    maxSize.value = f.max_params_b ?? "";
    for (const [name, box] of Object.entries(modalityBoxes)) box.checked = (f.modalities || []).includes(name);
    for (const [name, box] of Object.entries(formatBoxes)) box.checked = (f.formats || []).includes(name);
    languages.value = (f.languages || []).join(",");
    const lic = Array.isArray(f.license) ? f.license[0] || "" : f.license || "";
    license.value = lic;
  }

  let timer = null;
  function search(delay = 300) {
    clearTimeout(timer);
    timer = setTimeout(() => {
      panel.classList.add("km-busy");
      model.send({ type: "search", query: query.value, filters: readFilters(), k: parseInt(k.value, 10) });
    }, delay);
  }
  query.addEventListener("input", () => search());
  query.addEventListener("keydown", (e) => {
    if (e.key === "Enter") search(0);
  });
  k.addEventListener("change", () => search(0));
  for (const control of [minSize, maxSize, languages]) control.addEventListener("change", () => search(0));
  license.addEventListener("change", () => search(0));
  for (const box of [...Object.values(modalityBoxes), ...Object.values(formatBoxes)]) {
    box.addEventListener("change", () => search(0));
  }

  function card(r) {
    const current = model.get("default_model");
    const inUse = current === r.id || (r.path && current === r.path);
    const download = model.get("downloads")[r.id] || "";
    const use = el("button", { class: "km-use", text: inUse ? "✓ In use" : "Use", title: "set as default model" });
    if (inUse) use.classList.add("km-in-use");
    use.addEventListener("click", () => model.send({ type: "use", id: r.id }));
    const dl = el("button", { class: "km-download", title: "download into the local hub cache" });
    dl.textContent = r.local ? "✓ Local" : download === "running" ? "Downloading…" : download.startsWith("done") ? "✓ Downloaded" : "Download";
    dl.disabled = Boolean(r.local) || download === "running";
    if (download.startsWith("failed")) dl.title = download;
    dl.addEventListener("click", () => model.send({ type: "download", id: r.id }));
    const meta = [size(r.params_b) + (r.active_params_b ? ` (${size(r.active_params_b)} active)` : ""), context(r.context_length), r.license && r.license_verdict ? `${r.license} (${r.license_verdict})` : r.license, r.release]
      .filter(Boolean)
      .join(" · ");
    const attrs = { class: r.relaxed ? "km-card km-relaxed" : "km-card", "data-id": r.id };
    if (r.relaxed) attrs["data-relaxed"] = r.relaxed;
    return el("div", attrs, [
      el("div", { class: "km-card-head" }, [
        el("span", { class: "km-card-id", text: r.id }),
        r.local ? el("span", { class: "km-badge", text: "local" }) : null,
        r.relaxed ? el("span", { class: "km-badge km-badge-relaxed", text: `relaxed: ${r.relaxed}`, title: "outside this understood filter; the nearest such models" }) : null,
        el("span", { class: "km-card-meta", text: meta }),
      ]),
      el("div", { class: "km-card-chips" }, [
        ...chips(r.tasks, "task"),
        ...chips((r.modalities || []).filter((m) => m !== "text"), "input"),
        ...chips((r.formats || []).filter((f) => f !== "safetensors"), "format"),
        ...chips((r.languages || []).slice(0, 6), "lang"),
      ]),
      el("div", { class: "km-card-desc", text: r.description || "" }),
      el("div", { class: "km-card-why", text: r.why ? `why: ${r.why}` : "" }),
      el("div", { class: "km-card-actions" }, [use, dl]),
    ]);
  }

  function draw() {
    panel.classList.remove("km-busy");
    if (document.activeElement !== query) query.value = model.get("query");
    const wanted = String(model.get("k") || 10);
    if (![...k.options].some((o) => o.value === wanted)) k.append(el("option", { value: wanted, text: `${wanted} results` }));
    k.value = wanted;
    const understood = model.get("understood") || [];
    const parts = [];
    if (model.get("error")) parts.push(el("div", { class: "km-error", text: model.get("error") }));
    if (understood.length) parts.push(el("div", { class: "km-understood", text: "understood: " + understood.join(" · ") }));
    if (model.get("note")) parts.push(el("div", { class: "km-note", text: model.get("note") }));
    info.replaceChildren(...parts);
    const rows = model.get("results") || [];
    const cards = [];
    rows.forEach((r, i) => {
      if (r.relaxed && (i === 0 || !rows[i - 1].relaxed)) {
        cards.push(el("div", { class: "km-relaxed-divider", text: `nearest models outside “${r.relaxed}”` }));
      }
      cards.push(card(r));
    });
    results.replaceChildren(...cards);
    results.dataset.query = model.get("query"); // the query these cards answer
    if (!rows.length && !model.get("note") && !model.get("error")) {
      results.append(el("div", { class: "km-empty", text: "type what you need: size, inputs, language, task…" }));
    }
    const status = model.get("status");
    const footerParts = [
      el("span", { text: "default model: " }),
      el("code", { class: "km-default", text: model.get("default_model") }),
    ];
    if (status) footerParts.push(el("span", { class: "km-status", text: " — " + status }));
    footer.replaceChildren(...footerParts);
    refresh.disabled = Boolean(model.get("refreshing"));
  }

  writeFilters();
  draw();
  model.on("change:results", draw);
  model.on("change:searches", draw);
  model.on("change:note", draw);
  model.on("change:error", draw);
  model.on("change:default_model", draw);
  model.on("change:downloads", draw);
  model.on("change:status", draw);
  model.on("change:refreshing", draw);
  model.on("change:filters", writeFilters);
  return () => clearTimeout(timer);
}

export default { render };
