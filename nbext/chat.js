// Chat panel (anywidget). The kernel streams replies into the `turns` trait; this module only renders
// them and sends the user's actions back: {type: "send", text}, {type: "clear"}, {type: "prefer", turn, model}.

const escapeHtml = (s) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function inline(text) {
  // text is already escaped
  return text
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
}

// A small Markdown renderer: fenced code, headings, lists, paragraphs, inline code/bold/italic/links.
export function markdown(src) {
  const out = [];
  const lines = escapeHtml(src || "").split("\n");
  let para = [];
  let list = null; // "ul" | "ol"
  const flushPara = () => {
    if (para.length) out.push(`<p>${inline(para.join("<br>"))}</p>`);
    para = [];
  };
  const closeList = () => {
    if (list) out.push(`</${list}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^```\s*([\w+-]*)\s*$/);
    if (fence) {
      flushPara();
      closeList();
      const code = [];
      i++;
      while (i < lines.length && !/^```\s*$/.test(lines[i])) code.push(lines[i++]);
      out.push(`<pre><code class="language-${fence[1] || "text"}">${code.join("\n")}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
    const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
    if (heading) {
      flushPara();
      closeList();
      const level = heading[1].length + 2; // h3..h6 inside the panel
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
    } else if (bullet || numbered) {
      flushPara();
      const kind = bullet ? "ul" : "ol";
      if (list !== kind) {
        closeList();
        out.push(`<${kind}>`);
        list = kind;
      }
      out.push(`<li>${inline((bullet || numbered)[1])}</li>`);
    } else if (!line.trim()) {
      flushPara();
      closeList();
    } else {
      closeList();
      para.push(line);
    }
  }
  flushPara();
  closeList();
  return out.join("");
}

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

const MAX_IMAGE_SIDE = 1024; // pictures are scaled down in the browser before they travel to the kernel

// A File/Blob image -> data: URL, scaled so its longer side is at most MAX_IMAGE_SIDE.
function imageDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(reader.error);
    reader.onload = () => {
      const img = new Image();
      img.onerror = () => reject(new Error("not an image"));
      img.onload = () => {
        const scale = Math.min(1, MAX_IMAGE_SIDE / Math.max(img.width, img.height));
        if (scale === 1) return resolve(reader.result);
        const canvas = document.createElement("canvas");
        canvas.width = Math.round(img.width * scale);
        canvas.height = Math.round(img.height * scale);
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        resolve(canvas.toDataURL(file.type === "image/png" ? "image/png" : "image/jpeg", 0.92));
      };
      img.src = reader.result;
    };
    reader.readAsDataURL(file);
  });
}

function render({ model, el }) {
  el.classList.add("km-chat");

  // header: where, which model(s), sampling controls
  const picker = h("select", { class: "km-chat-model", title: "model" });
  const columnsLabel = h("span", { class: "km-chat-columns" });
  const temperature = h("input", { type: "range", min: "0", max: "2", step: "0.05", class: "km-chat-temperature" });
  const temperatureValue = h("span", { class: "km-chat-value" });
  const maxTokens = h("input", { type: "number", min: "1", max: "32768", class: "km-chat-max-tokens" });
  const system = h("textarea", { class: "km-chat-system", rows: "2", placeholder: "System prompt (optional)" });
  const header = h(
    "div",
    { class: "km-chat-header" },
    h("span", { class: "km-chat-url" }),
    picker,
    columnsLabel,
    h("label", {}, "temperature ", temperature, temperatureValue),
    h("label", {}, "max tokens ", maxTokens),
  );
  const transcript = h("div", { class: "km-chat-transcript" });
  const status = h("div", { class: "km-chat-status" });
  const input = h("textarea", { class: "km-chat-input", rows: "2", placeholder: "Message (Enter sends, Shift+Enter: new line)" });
  const sendButton = h("button", { class: "km-chat-send", type: "button" }, "Send");
  const clearButton = h("button", { class: "km-chat-clear", type: "button" }, "Clear");
  const fileInput = h("input", { type: "file", accept: "image/*", multiple: "", class: "km-chat-file" });
  fileInput.style.display = "none";
  const attachButton = h(
    "button",
    { class: "km-chat-attach", type: "button", title: "attach an image (or paste / drop one)" },
    "+ image",
  );
  const pending = h("div", { class: "km-chat-pending" });
  const footer = h("div", { class: "km-chat-footer" }, attachButton, fileInput, input, sendButton, clearButton);
  el.append(header, system, transcript, status, pending, footer);

  // images waiting to be sent with the next message (data: URLs)
  let images = [];
  const renderPending = () => {
    pending.replaceChildren(
      ...images.map((url, i) =>
        h(
          "span",
          { class: "km-chat-thumb" },
          h("img", { src: url, alt: `image ${i + 1}` }),
          h(
            "button",
            {
              type: "button",
              class: "km-chat-unattach",
              title: "remove",
              onclick: () => {
                images = images.filter((_, k) => k !== i);
                renderPending();
              },
            },
            "×",
          ),
        ),
      ),
    );
    pending.style.display = images.length ? "" : "none";
  };
  const addFiles = async (files) => {
    for (const file of files) {
      if (!file.type.startsWith("image/")) continue;
      try {
        images.push(await imageDataUrl(file));
      } catch (error) {
        status.textContent = `${file.name || "pasted file"}: ${error.message}`;
      }
    }
    renderPending();
  };
  attachButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    addFiles([...fileInput.files]);
    fileInput.value = "";
  });
  el.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  el.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.items || [])].some((item) => item.kind === "file")) {
      event.preventDefault();
      el.classList.add("km-drop");
    }
  });
  el.addEventListener("dragleave", () => el.classList.remove("km-drop"));
  el.addEventListener("drop", (event) => {
    el.classList.remove("km-drop");
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  renderPending();

  const send = () => {
    const text = input.value.trim();
    if ((!text && !images.length) || model.get("busy")) return;
    model.send({ type: "send", text, images });
    input.value = "";
    images = [];
    renderPending();
  };
  sendButton.addEventListener("click", send);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });
  clearButton.addEventListener("click", () => model.send({ type: "clear" }));
  picker.addEventListener("change", () => {
    model.set("models", [picker.value]);
    model.save_changes();
  });
  temperature.addEventListener("input", () => {
    model.set("temperature", parseFloat(temperature.value));
    model.save_changes();
  });
  maxTokens.addEventListener("change", () => {
    const value = parseInt(maxTokens.value, 10);
    if (value > 0) {
      model.set("max_tokens", value);
      model.save_changes();
    }
  });
  system.addEventListener("change", () => {
    model.set("system", system.value);
    model.save_changes();
  });

  const copyButton = (text) =>
    h(
      "button",
      {
        class: "km-chat-copy",
        type: "button",
        title: "copy",
        onclick: (event) => {
          navigator.clipboard?.writeText(text);
          event.target.textContent = "copied";
          setTimeout(() => (event.target.textContent = "copy"), 1200);
        },
      },
      "copy",
    );

  function renderHeader() {
    const models = model.get("models");
    const available = model.get("available");
    el.querySelector(".km-chat-url").textContent = model.get("url");
    const compare = models.length > 1;
    picker.style.display = compare ? "none" : "";
    columnsLabel.textContent = compare ? `comparing ${models.join(" · ")}` : "";
    picker.replaceChildren(...available.map((name) => h("option", { value: name }, name)));
    if (!compare) picker.value = models[0];
    temperature.value = String(model.get("temperature"));
    temperatureValue.textContent = Number(model.get("temperature")).toFixed(2);
    maxTokens.value = String(model.get("max_tokens"));
    if (document.activeElement !== system) system.value = model.get("system");
  }

  function renderTurns() {
    const nearBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
    const turns = model.get("turns");
    const compare = model.get("models").length > 1;
    transcript.replaceChildren(
      ...turns.map((turn, index) => {
        const names = Object.keys(turn.answers);
        const allDone = names.every((n) => turn.done[n]);
        const columns = names.map((name) => {
          const text = turn.answers[name];
          const done = turn.done[name];
          const error = turn.errors[name];
          const body = h("div", { class: "km-chat-markdown" });
          body.innerHTML = markdown(text) + (done ? "" : '<span class="km-chat-cursor">▍</span>');
          const calls = ((turn.calls || {})[name] || []).map((call) =>
            h(
              "div",
              { class: "km-chat-call" },
              h("span", { class: "km-chat-call-name" }, `🔧 ${call.name}`),
              h("code", { class: "km-chat-call-args" }, call.arguments),
            ),
          );
          const tools = h("div", { class: "km-chat-tools" });
          if (done && !error) tools.append(copyButton(text));
          if (compare && allDone && !error) {
            const chosen = turn.preferred === name;
            tools.append(
              h(
                "button",
                {
                  class: "km-chat-prefer" + (chosen ? " km-chosen" : ""),
                  type: "button",
                  onclick: () => model.send({ type: "prefer", turn: index, model: name }),
                },
                chosen ? "✓ better" : "this answer is better",
              ),
            );
          }
          if (turn.stats[name]) tools.append(h("span", { class: "km-chat-stats" }, turn.stats[name]));
          return h(
            "div",
            {
              class: "km-chat-answer" + (done ? "" : " km-streaming") + (turn.preferred === name ? " km-preferred" : ""),
              "data-model": name,
            },
            h("div", { class: "km-chat-role" }, name),
            error ? h("div", { class: "km-chat-error" }, error) : body,
            ...calls,
            tools,
          );
        });
        return h(
          "div",
          { class: "km-chat-turn" },
          h(
            "div",
            { class: "km-chat-user" },
            h("div", { class: "km-chat-role" }, "you"),
            ...(turn.images || []).map((url) => h("img", { class: "km-chat-image", src: url, alt: "image" })),
            turn.prompt,
          ),
          h("div", { class: "km-chat-answers" + (compare ? " km-compare" : "") }, ...columns),
        );
      }),
    );
    if (nearBottom) transcript.scrollTop = transcript.scrollHeight;
  }

  function renderState() {
    const busy = model.get("busy");
    sendButton.disabled = busy;
    clearButton.disabled = busy;
    el.classList.toggle("km-busy", busy);
    status.textContent = model.get("status");
  }

  renderHeader();
  renderTurns();
  renderState();
  const onHeader = () => renderHeader();
  const onTurns = () => renderTurns();
  const onState = () => renderState();
  model.on("change:models change:available change:url change:temperature change:max_tokens change:system", onHeader);
  model.on("change:turns", onTurns);
  model.on("change:busy change:status", onState);
  return () => {
    model.off("change:models change:available change:url change:temperature change:max_tokens change:system", onHeader);
    model.off("change:turns", onTurns);
    model.off("change:busy change:status", onState);
  };
}

export default { render };
