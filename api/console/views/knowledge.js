// Knowledge bases: list and create; a base's files with live ingest status (polled), upload with progress,
// download and delete.
import * as api from "../api.js";
import { announce, busy, confirmed, field, fmtDate, fmtSize, h, pager, replace, showError, statusBadge } from "../ui.js";

const POLL_MS = 1500;
const PENDING = new Set(["queued", "processing"]);

export function knowledgeView(ctx) {
  const list = h("ul", { class: "pick-list", "aria-label": "Knowledge bases" });
  const detail = h("div", { class: "detail" });
  const name = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const description = h("input", { maxlength: 2000, autocomplete: "off" });
  const createForm = ctx.canEdit && h("form", { class: "card", onsubmit: create },
    h("h2", {}, "New knowledge base"), field("Name", name), field("Description (optional)", description),
    h("button", { type: "submit", class: "primary" }, "Create"));
  const el = h("section", { class: "view", hidden: true, "aria-labelledby": "kb-title" },
    h("h1", { id: "kb-title", tabindex: -1 }, "Knowledge"),
    h("div", { class: "split" },
      h("div", { class: "side" }, h("h2", {}, "Knowledge bases"), list, createForm),
      detail));

  let kbs = [];
  let selected = null; // kb id
  let page = 1;
  let timer = null;
  let visible = false;

  async function loadKbs(refresh = true) {
    try {
      kbs = await ctx.knowledgeBases(refresh);
    } catch (err) {
      return showError(err, list);
    }
    if (!kbs.some((kb) => kb.id === selected)) selected = kbs[0]?.id ?? null;
    renderList();
    renderDetail();
  }

  function renderList() {
    replace(list, kbs.length ? kbs.map((kb) => h("li", {},
      h("button", { type: "button", class: "pick", "aria-current": kb.id === selected ? "true" : null,
                    onclick: () => select(kb.id) },
        h("span", { class: "pick-name" }, kb.name),
        kb.description ? h("span", { class: "muted" }, kb.description) : null)))
      : h("li", { class: "muted" }, ctx.canEdit ? "No knowledge bases yet: create one." : "No knowledge bases yet."));
  }

  function select(kbId) {
    selected = kbId;
    page = 1;
    renderList();
    renderDetail();
  }

  async function create(event) {
    event.preventDefault();
    await busy(event.submitter, async () => {
      try {
        const kb = (await api.post("/knowledge-bases", { name: name.value.trim(), description: description.value.trim() })).data;
        name.value = description.value = "";
        selected = kb.id;
        announce(`Knowledge base ${kb.name} created.`);
        await loadKbs();
      } catch (err) { showError(err); }
    });
  }

  // --- the selected knowledge base ----------------------------------------------------------------------------
  const files = h("div", { class: "files" });
  const uploads = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const fileInput = h("input", { type: "file", multiple: true });
  const tagsInput = h("input", { autocomplete: "off", placeholder: "hr, policies" });

  function renderDetail() {
    const kb = kbs.find((k) => k.id === selected);
    if (!kb) return replace(detail, h("p", { class: "muted" }, "Select or create a knowledge base."));
    const uploadForm = ctx.canEdit && h("form", { class: "card upload", onsubmit: startUpload },
      h("h3", {}, "Upload files"),
      field("Files", fileInput, "PDF, DOCX, text, Markdown, HTML, CSV or JSON; several at once."),
      field("Tags (optional, comma-separated)", tagsInput),
      h("button", { type: "submit", class: "primary" }, "Upload"), uploads);
    if (uploadForm) {
      uploadForm.addEventListener("dragover", (e) => { e.preventDefault(); uploadForm.classList.add("drop"); });
      uploadForm.addEventListener("dragleave", () => uploadForm.classList.remove("drop"));
      uploadForm.addEventListener("drop", (e) => {
        e.preventDefault();
        uploadForm.classList.remove("drop");
        send([...e.dataTransfer.files]);
      });
    }
    replace(detail,
      h("div", { class: "detail-head" },
        h("h2", {}, kb.name),
        ctx.canEdit && h("button", { type: "button", class: "danger", onclick: (e) => removeKb(e, kb) }, "Delete knowledge base")),
      kb.description && h("p", { class: "muted" }, kb.description),
      uploadForm, files);
    loadFiles();
  }

  async function removeKb(event, kb) {
    if (!confirmed(`Delete the knowledge base "${kb.name}" with all its files?`)) return;
    await busy(event.currentTarget, async () => {
      try {
        await api.del(`/knowledge-bases/${api.enc(kb.id)}`);
        announce(`Knowledge base ${kb.name} deleted.`);
        selected = null;
        await loadKbs();
      } catch (err) { showError(err); }
    });
  }

  function startUpload(event) {
    event.preventDefault();
    if (!fileInput.files.length) return announce("Choose one or more files first.", "error");
    send([...fileInput.files]);
    fileInput.value = "";
  }

  async function send(chosen) {
    const kbId = selected;
    const rows = chosen.map((file) => {
      const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
      const state = h("span", { class: "muted" }, "waiting");
      uploads.append(h("li", {}, h("span", { class: "upload-name" }, file.name), bar, state));
      return { file, bar, state };
    });
    announce(`Uploading ${rows.length} file${rows.length > 1 ? "s" : ""}…`);
    let ok = 0;
    for (const row of rows) { // one request per file: a progress bar each, one failure spoils nothing else
      row.state.textContent = "uploading";
      try {
        const result = await api.upload(kbId, row.file, {
          tags: tagsInput.value.trim(),
          onProgress: (fraction) => { row.bar.value = Math.round(fraction * 100); },
        });
        row.bar.value = 100;
        row.state.textContent = result.data.duplicate ? "already present" : "uploaded";
        ctx.rememberFile(result.data.id, kbId);
        ok++;
      } catch (err) {
        row.state.textContent = err.message;
        row.state.className = "error";
      }
    }
    announce(`${ok} of ${rows.length} uploaded; ingesting…`);
    if (kbId === selected) loadFiles();
  }

  async function loadFiles() {
    clearTimeout(timer);
    const kbId = selected;
    if (!kbId || !visible) return;
    let result;
    try {
      result = await api.get(`/knowledge-bases/${api.enc(kbId)}/files`, { page, limit: 50 });
    } catch (err) {
      return showError(err, files);
    }
    if (kbId !== selected) return;
    for (const file of result.data) ctx.rememberFile(file.id, kbId);
    renderFiles(kbId, result);
    if (result.data.some((f) => PENDING.has(f.status))) timer = setTimeout(loadFiles, POLL_MS);
  }

  function renderFiles(kbId, result) {
    if (!result.data.length) return replace(files, h("p", { class: "muted" }, "No files yet."));
    const rows = result.data.map((file) => h("tr", { "data-file-id": file.id },
      h("th", { scope: "row" }, file.name),
      h("td", {}, fileStatus(file)),
      h("td", {}, fmtSize(file.size)),
      h("td", {}, file.status === "ready" ? String(file.chunks_total) : "—"),
      h("td", {}, fmtDate(file.created_at)),
      h("td", { class: "actions" },
        h("button", { type: "button", "aria-label": `Download ${file.name}`,
                      onclick: (e) => busy(e.currentTarget, () => api.download(kbId, file.id, file.name).catch(showError)) }, "Download"),
        ctx.canEdit && h("button", { type: "button", class: "danger", "aria-label": `Delete ${file.name}`,
                                     onclick: (e) => removeFile(e, kbId, file) }, "Delete"))));
    replace(files,
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", {}, `Files (${result.pagination.total})`),
        h("thead", {}, h("tr", {}, ["Name", "Status", "Size", "Chunks", "Added", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows))),
      pager(result.pagination, (p) => { page = p; loadFiles(); }));
  }

  function fileStatus(file) {
    if (file.status === "processing") return statusBadge("processing", `${Math.round((file.progress || 0) * 100)} %`);
    if (file.status === "failed") return [statusBadge("failed"), h("span", { class: "error small" }, ` ${file.error || ""}`)];
    return statusBadge(file.status);
  }

  async function removeFile(event, kbId, file) {
    if (!confirmed(`Delete ${file.name}, its chunks and its original?`)) return;
    await busy(event.currentTarget, async () => {
      try {
        await api.del(`/knowledge-bases/${api.enc(kbId)}/files/${api.enc(file.id)}`);
        announce(`${file.name} deleted.`);
        await loadFiles();
      } catch (err) { showError(err); }
    });
  }

  return {
    el,
    show() { el.hidden = false; visible = true; loadKbs(); },
    hide() { el.hidden = true; visible = false; clearTimeout(timer); },
  };
}
